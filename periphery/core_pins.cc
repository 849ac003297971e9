#include "periphery/core_pins.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/pki.h"
#include "common/secrets.h"

namespace varan::periphery {
namespace {

constexpr char kPinFile[] = "core-ca.pin";
constexpr char kRetiredFile[] = "core-ca.retired";
// Retired pins remembered; older ones are forgotten.
constexpr size_t kMaxRetired = 16;

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The pins in `path`, one per line; none when it does not exist.
absl::StatusOr<std::vector<std::string>> ReadPins(const std::string& path) {
  auto text = ReadSecretFile(path);
  if (absl::IsNotFound(text.status())) return std::vector<std::string>{};
  if (!text.ok()) return text.status();
  std::vector<std::string> pins;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    auto pin = pki::ParsePin(std::string(line), path);
    if (!pin.ok()) return pin.status();
    if (!Contains(pins, *pin)) pins.push_back(*std::move(pin));
  }
  return pins;
}

}  // namespace

CorePins::CorePins(std::string state_dir, std::vector<std::string> pins,
                   std::vector<std::string> retired)
    : state_dir_(std::move(state_dir)),
      pins_(std::move(pins)),
      retired_(std::move(retired)) {}

absl::StatusOr<std::unique_ptr<CorePins>> CorePins::Open(
    const std::string& state_dir, const std::string& given) {
  std::vector<std::string> kept, retired;
  if (!state_dir.empty()) {
    auto read = ReadPins(absl::StrCat(state_dir, "/", kPinFile));
    if (!read.ok()) return read.status();
    kept = *std::move(read);
    read = ReadPins(absl::StrCat(state_dir, "/", kRetiredFile));
    if (!read.ok()) return read.status();
    retired = *std::move(read);
  }
  std::unique_ptr<CorePins> pins(new CorePins(state_dir, kept, retired));
  if (given.empty() || Contains(kept, given) || Contains(retired, given)) {
    return pins;
  }
  // A pin never seen: the operator points the periphery at another CA.
  absl::MutexLock lock(&pins->mu_);
  pins->pins_ = {given};
  if (absl::Status s = pins->SaveLocked(); !s.ok()) return s;
  return pins;
}

std::vector<std::string> CorePins::Get() const {
  absl::MutexLock lock(&mu_);
  return pins_;
}

bool CorePins::empty() const {
  absl::MutexLock lock(&mu_);
  return pins_.empty();
}

absl::StatusOr<bool> CorePins::Replace(const std::vector<std::string>& pins) {
  if (pins.empty()) {
    return absl::InvalidArgumentError("core sent an empty set of CA pins");
  }
  std::vector<std::string> parsed;
  for (const std::string& p : pins) {
    auto pin = pki::ParsePin(p, "a CA pin core sent");
    if (!pin.ok()) return pin.status();
    if (!Contains(parsed, *pin)) parsed.push_back(*std::move(pin));
  }
  absl::MutexLock lock(&mu_);
  std::vector<std::string> a = parsed, b = pins_;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  if (a == b) return false;  // the same set, perhaps in another order
  for (const std::string& old : pins_) {
    if (!Contains(parsed, old) && !Contains(retired_, old)) {
      retired_.push_back(old);
    }
  }
  std::erase_if(retired_,
                [&](const std::string& r) { return Contains(parsed, r); });
  if (retired_.size() > kMaxRetired) {
    retired_.erase(retired_.begin(), retired_.end() - kMaxRetired);
  }
  pins_ = std::move(parsed);
  if (absl::Status s = SaveLocked(); !s.ok()) return s;
  return true;
}

absl::Status CorePins::SaveLocked() const {
  if (state_dir_.empty()) return absl::OkStatus();
  // Retired first: after a crash between the two writes the previous set
  // is kept, and core sends the new one again with its next answer.
  if (!retired_.empty()) {
    if (absl::Status s =
            WriteSecretFile(absl::StrCat(state_dir_, "/", kRetiredFile),
                            absl::StrJoin(retired_, "\n"));
        !s.ok()) {
      return s;
    }
  }
  return WriteSecretFile(absl::StrCat(state_dir_, "/", kPinFile),
                         absl::StrJoin(pins_, "\n"));
}

}  // namespace varan::periphery
