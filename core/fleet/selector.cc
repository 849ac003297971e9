#include "core/fleet/selector.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace varan::core {
namespace {

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '_' || c == '.';
}

// Characters a key or value token may contain (validated further later).
bool IsTokenChar(char c) { return IsNameChar(c) || c == '/'; }

bool IsValidName(absl::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!absl::ascii_isalnum(static_cast<unsigned char>(s.front())) ||
      !absl::ascii_isalnum(static_cast<unsigned char>(s.back()))) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), IsNameChar);
}

bool IsValidDnsSubdomain(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t dot = s.find('.', start);
    absl::string_view label =
        s.substr(start, dot == absl::string_view::npos ? absl::string_view::npos
                                                       : dot - start);
    if (label.empty() || label.size() > 63) return false;
    for (char c : label) {
      if (!(absl::ascii_islower(static_cast<unsigned char>(c)) ||
            absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-')) {
        return false;
      }
    }
    if (label.front() == '-' || label.back() == '-') return false;
    if (dot == absl::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

class Parser {
 public:
  explicit Parser(absl::string_view text) : text_(text) {}

  absl::StatusOr<std::vector<Selector::Requirement>> Parse() {
    std::vector<Selector::Requirement> out;
    SkipSpace();
    if (pos_ == text_.size()) return out;  // empty selector
    while (true) {
      auto req = ParseRequirement();
      if (!req.ok()) return req.status();
      out.push_back(*std::move(req));
      SkipSpace();
      if (pos_ == text_.size()) break;
      if (text_[pos_] != ',') return Error("expected ',' or end of selector");
      ++pos_;
      SkipSpace();
      if (pos_ == text_.size())
        return Error("expected a requirement after ','");
    }
    return out;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("invalid selector \"", text_,
                                                   "\": at position ", pos_ + 1,
                                                   ": ", what));
  }

  void SkipSpace() {
    while (pos_ < text_.size() &&
           absl::ascii_isspace(static_cast<unsigned char>(text_[pos_]))) {
      ++pos_;
    }
  }

  absl::string_view Token() {
    size_t start = pos_;
    while (pos_ < text_.size() && IsTokenChar(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  absl::StatusOr<std::string> Key() {
    SkipSpace();
    size_t start = pos_;
    absl::string_view key = Token();
    if (key.empty()) return Error("expected a label key");
    absl::Status s = ValidateLabelKey(key);
    if (!s.ok()) {
      pos_ = start;
      return Error(s.message());
    }
    return std::string(key);
  }

  absl::StatusOr<std::string> Value() {
    SkipSpace();
    size_t start = pos_;
    absl::string_view value = Token();
    absl::Status s = ValidateLabelValue(value);
    if (!s.ok()) {
      pos_ = start;
      return Error(s.message());
    }
    return std::string(value);
  }

  absl::StatusOr<Selector::Requirement> ParseRequirement() {
    Selector::Requirement req;
    SkipSpace();
    if (text_[pos_] == '!') {
      ++pos_;
      auto key = Key();
      if (!key.ok()) return key.status();
      req.key = *key;
      req.op = Selector::Op::kDoesNotExist;
      return req;
    }
    auto key = Key();
    if (!key.ok()) return key.status();
    req.key = *key;
    SkipSpace();
    if (pos_ == text_.size() || text_[pos_] == ',') {
      req.op = Selector::Op::kExists;
      return req;
    }
    absl::string_view rest = text_.substr(pos_);
    if (rest.substr(0, 2) == "==" || rest.substr(0, 2) == "!=" ||
        rest.front() == '=') {
      if (rest.substr(0, 2) == "!=") {
        req.op = Selector::Op::kNotEquals;
        pos_ += 2;
      } else {
        req.op = Selector::Op::kEquals;
        pos_ += rest.substr(0, 2) == "==" ? 2 : 1;
      }
      auto value = Value();
      if (!value.ok()) return value.status();
      req.values.push_back(*value);
      return req;
    }
    size_t op_start = pos_;
    absl::string_view word = Token();
    if (word == "in") {
      req.op = Selector::Op::kIn;
    } else if (word == "notin") {
      req.op = Selector::Op::kNotIn;
    } else {
      pos_ = op_start;
      return Error("expected '=', '==', '!=', 'in', 'notin', ',' or end");
    }
    SkipSpace();
    if (pos_ == text_.size() || text_[pos_] != '(') {
      return Error("expected '(' after 'in'/'notin'");
    }
    ++pos_;
    while (true) {
      SkipSpace();
      size_t value_start = pos_;
      auto value = Value();
      if (!value.ok()) return value.status();
      if (value->empty()) {
        pos_ = value_start;
        return Error("expected a value in the list");
      }
      req.values.push_back(*value);
      SkipSpace();
      if (pos_ == text_.size())
        return Error("expected ',' or ')' in value list");
      if (text_[pos_] == ')') {
        ++pos_;
        break;
      }
      if (text_[pos_] != ',') return Error("expected ',' or ')' in value list");
      ++pos_;
    }
    return req;
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::Status ValidateLabelKey(absl::string_view key) {
  absl::string_view name = key;
  size_t slash = key.find('/');
  if (slash != absl::string_view::npos) {
    absl::string_view prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (!IsValidDnsSubdomain(prefix)) {
      return absl::InvalidArgumentError(
          absl::StrCat("label key \"", key, "\": prefix \"", prefix,
                       "\" must be a lowercase DNS subdomain"));
    }
  }
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "label key \"", key,
        "\": name must be 1-63 characters of [A-Za-z0-9-_.], starting and "
        "ending with a letter or digit"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLabelValue(absl::string_view value) {
  if (value.empty() || IsValidName(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "label value \"", value,
      "\": must be empty or 1-63 characters of [A-Za-z0-9-_.], starting and "
      "ending with a letter or digit"));
}

absl::StatusOr<Selector> Selector::Parse(absl::string_view text) {
  Parser parser(text);
  auto reqs = parser.Parse();
  if (!reqs.ok()) return reqs.status();
  Selector s;
  s.requirements_ = *std::move(reqs);
  return s;
}

bool Selector::Matches(const Labels& labels) const {
  for (const Requirement& r : requirements_) {
    auto it = labels.find(r.key);
    const bool has = it != labels.end();
    const bool in_values = has && std::find(r.values.begin(), r.values.end(),
                                            it->second) != r.values.end();
    switch (r.op) {
      case Op::kEquals:
      case Op::kIn:
        if (!in_values) return false;
        break;
      case Op::kNotEquals:
      case Op::kNotIn:
        if (in_values) return false;
        break;
      case Op::kExists:
        if (!has) return false;
        break;
      case Op::kDoesNotExist:
        if (has) return false;
        break;
    }
  }
  return true;
}

}  // namespace varan::core
