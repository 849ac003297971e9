#include "client/cli/cli.h"

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/cli/config.h"
#include "common/address.h"
#include "common/secrets.h"
#include "common/time_util.h"
#include "google/protobuf/util/json_util.h"

namespace varan::cli {

void AddGlobalOptions(CLI::App& app, GlobalOptions* options) {
  app.add_option("--core", options->core,
                 absl::StrCat("Core address, e.g. [::1]:7700 or "
                              "core.example:7700; several replicas "
                              "comma-separated (default: the current "
                              "context's, else ",
                              kDefaultCore, ")"))
      ->envname("VARAN_CORE");
  app.add_option("--token-file", options->token_file,
                 "File holding an operator token (else VARAN_TOKEN_FILE, the "
                 "token itself in VARAN_TOKEN, or the current context's)")
      ->envname("VARAN_TOKEN_FILE");
  app.add_option("--tls-ca", options->tls.ca,
                 "Use TLS and verify core's certificate against this PEM CA "
                 "bundle (\"system\": the system's roots)")
      ->envname("VARAN_TLS_CA");
  app.add_option("--tls-cert", options->tls.cert,
                 "PEM client certificate, when core requires mutual TLS")
      ->envname("VARAN_TLS_CERT");
  app.add_option("--tls-key", options->tls.key, "PEM key of --tls-cert")
      ->envname("VARAN_TLS_KEY");
  app.add_option("--tls-server-name", options->tls.server_name,
                 "Name core's certificate must carry (default: the host in "
                 "--core)")
      ->envname("VARAN_TLS_SERVER_NAME");
  app.add_option("--ca-hash", options->tls.ca_pin,
                 "Verify core by the pin of its cluster CA (sha256:..., as "
                 "varan-core logs it) instead of --tls-ca")
      ->envname("VARAN_CA_HASH");
  app.add_flag("--insecure-skip-verify", options->tls.skip_verify,
               "Use TLS without checking who answers (anyone on the path "
               "can read the token)");
  app.add_flag("--insecure-plaintext", options->insecure_plaintext,
               "Talk to a core serving plaintext (varan-core "
               "--insecure-plaintext)")
      ->envname("VARAN_INSECURE_PLAINTEXT");
  app.add_option("--timeout", options->timeout_seconds,
                 "Seconds to wait for core to answer a request")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
}

namespace {

// The error for a core varanctl has no way to verify: the pin its CA has,
// for the user to compare with the one core logged, or why there is none.
absl::Status Unpinned(const client::ClientOptions& copts) {
  const std::string first = std::string(
      absl::StripAsciiWhitespace(*absl::StrSplit(copts.address, ',').begin()));
  auto pins =
      client::ProbeCaPins(first, std::min(copts.timeout, absl::Seconds(5)));
  if (absl::IsUnavailable(pins.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot reach core at ", first,
        " over TLS to show its CA pin (it is down, or serves plaintext): "
        "pass --ca-hash (or --tls-ca) for a core serving TLS, "
        "--insecure-plaintext for one serving plaintext"));
  }
  if (!pins.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot reach core at ", first, " safely: ", pins.status().message()));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "core at ", first, " is not pinned: it offers the cluster CA ",
      absl::StrJoin(*pins, " or "),
      ". If that is the pin varan-core logged at start (\"its pin is ...\"), "
      "pass --ca-hash ",
      pins->front(),
      " (or set VARAN_CA_HASH, or `varanctl config set-context NAME "
      "--ca-hash ...`); --insecure-skip-verify connects without checking"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<client::CoreClient>> Connect(
    const GlobalOptions& options) {
  client::ClientOptions copts;
  copts.address = options.core;
  copts.timeout = absl::Seconds(options.timeout_seconds);
  std::string token_file = options.token_file;
  copts.tls = options.tls;
  const bool need_context =
      copts.address.empty() ||
      (token_file.empty() && options.token_env.empty()) ||
      copts.tls.ca.empty() || copts.tls.cert.empty() || copts.tls.key.empty() ||
      copts.tls.server_name.empty() || copts.tls.ca_pin.empty();
  if (need_context && !options.config_file.empty()) {
    auto file = LoadContexts(options.config_file);
    if (!file.ok()) return absl::InvalidArgumentError(file.status().message());
    if (!file->current.empty()) {
      auto it = file->contexts.find(file->current);
      if (it == file->contexts.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            options.config_file, ": current-context \"", file->current,
            "\" is not defined (varanctl config get-contexts)"));
      }
      if (copts.address.empty()) copts.address = it->second.core;
      if (token_file.empty() && options.token_env.empty()) {
        token_file = it->second.token_file;
      }
      const Context& c = it->second;
      for (auto [field, value] :
           {std::pair{&copts.tls.ca, &c.tls_ca},
            std::pair{&copts.tls.cert, &c.tls_cert},
            std::pair{&copts.tls.key, &c.tls_key},
            std::pair{&copts.tls.server_name, &c.tls_server_name},
            std::pair{&copts.tls.ca_pin, &c.ca_hash}}) {
        if (field->empty()) *field = *value;
      }
    }
  }
  if (copts.address.empty()) copts.address = kDefaultCore;
  if (!token_file.empty()) {
    auto token = ReadSecretFile(token_file);
    if (!token.ok()) return token.status();
    if (std::string w = LoosePermissionsWarning(token_file); !w.empty()) {
      std::cerr << "varanctl: warning: " << w << "\n";
    }
    copts.token = *token;
  } else if (!options.token_env.empty()) {
    copts.token = options.token_env;
  } else if (copts.tls.cert.empty()) {
    // (A client certificate from `varanctl certs issue` stands for a token.)
    return absl::FailedPreconditionError(
        "no operator token: pass --token-file FILE, set VARAN_TOKEN_FILE or "
        "VARAN_TOKEN, use a context with a token-file (varanctl config "
        "set-context), or a client certificate core issued (--tls-cert, "
        "--tls-key; varanctl certs issue)");
  }
  if (!copts.tls.key.empty()) {
    if (std::string w = LoosePermissionsWarning(copts.tls.key); !w.empty()) {
      std::cerr << "varanctl: warning: " << w << "\n";
    }
  }
  // Several core replicas: comma-separated.
  for (absl::string_view core : absl::StrSplit(copts.address, ',')) {
    if (auto addr = ParseDialAddress(absl::StripAsciiWhitespace(core), 7700);
        !addr.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--core: ", addr.status().message()));
    }
  }
  if (options.insecure_plaintext) {
    if (copts.tls.enabled()) {
      return absl::InvalidArgumentError(
          "--insecure-plaintext contradicts the TLS settings given (flags, "
          "VARAN_TLS_*/VARAN_CA_HASH or the context's)");
    }
  } else if (copts.tls.ca.empty() && copts.tls.ca_pin.empty() &&
             !copts.tls.skip_verify) {
    // Never trust the first core that answers: show what to pin.
    return Unpinned(copts);
  }
  // Errors left are about the TLS files, and name them.
  auto client = client::CoreClient::Create(copts);
  if (!client.ok())
    return absl::InvalidArgumentError(client.status().message());
  return client;
}

int Fail(const absl::Status& status) {
  if (absl::IsUnauthenticated(status)) {
    return Fail(absl::StrCat(status.message(),
                             " (check --token-file / VARAN_TOKEN or the "
                             "context's token-file)"));
  }
  if (absl::IsUnavailable(status)) {
    // gRPC reports a TLS mismatch (plaintext against TLS, a client
    // certificate missing or refused, an untrusted server) as a closed
    // socket or a handshake failure.
    const absl::string_view m = status.message();
    for (const char* sign :
         {"Socket closed", "andshake", "SSL", "ertificate"}) {
      if (absl::StrContains(m, sign)) {
        return Fail(absl::StrCat(
            m,
            " (a TLS mismatch? check --tls-ca or --ca-hash, "
            "--insecure-plaintext for a core serving plaintext, and "
            "--tls-cert/--tls-key when core requires client certificates)"));
      }
    }
  }
  return Fail(std::string(status.message()));
}

int Fail(const std::string& message) {
  std::cerr << "varanctl: error: " << message << "\n";
  return kExitUsage;
}

CLI::Validator OutputFormat() {
  return CLI::IsMember({"table", "wide", "json", "yaml"});
}

// A positive age such as "90s", "30m", "1h", "2d" or "1h30m".
absl::StatusOr<absl::Duration> ParseAge(std::string text) {
  const auto error = [&text] {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text, "\": expected a duration like 30m, 1h, 2d or 1h30m"));
  };
  absl::Duration total = absl::ZeroDuration();
  size_t i = 0;
  if (text.empty()) return error();
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() &&
           (absl::ascii_isdigit(static_cast<unsigned char>(text[i])) ||
            text[i] == '.')) {
      ++i;
    }
    double n;
    if (i == start || i == text.size() ||
        !absl::SimpleAtod(text.substr(start, i - start), &n)) {
      return error();
    }
    switch (text[i++]) {
      case 's':
        total += absl::Seconds(n);
        break;
      case 'm':
        total += absl::Minutes(n);
        break;
      case 'h':
        total += absl::Hours(n);
        break;
      case 'd':
        total += absl::Hours(24 * n);
        break;
      default:
        return error();
    }
  }
  if (total <= absl::ZeroDuration()) return error();
  return total;
}

CLI::Validator AgeValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto d = ParseAge(value);
        return d.ok() ? std::string() : std::string(d.status().message());
      },
      "DURATION");
}

CLI::Validator PositiveCount() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        uint32_t n = 0;
        if (!absl::SimpleAtoi(value, &n) || n == 0) {
          return absl::StrCat("\"", value,
                              "\": expected a whole number, 1 or more");
        }
        return "";
      },
      "N");
}

namespace {

google::protobuf::util::JsonPrintOptions JsonOptions() {
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  return opts;
}

void PrintJsonText(const std::string& text, std::ostream& out) {
  out << text;
  if (text.empty() || text.back() != '\n') out << "\n";
}

// Whether `s` can be written as a plain YAML scalar and still read back as
// the same string.
bool PlainYamlString(const std::string& s) {
  if (s.empty() || s.front() == ' ' || s.back() == ' ') return false;
  if (std::string_view("-?:,[]{}#&*!|>'\"%@`~.+0123456789").find(s.front()) !=
      std::string_view::npos) {
    return false;
  }
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || u >= 0x80) return false;
  }
  if (s.find(": ") != std::string::npos || s.find(" #") != std::string::npos ||
      s.back() == ':') {
    return false;
  }
  const std::string lower = absl::AsciiStrToLower(s);
  for (const char* word : {"true", "false", "null", "yes", "no", "on", "off",
                           "y", "n", ".inf", ".nan"}) {
    if (lower == word) return false;
  }
  return true;
}

std::string YamlString(const std::string& s) {
  if (PlainYamlString(s)) return s;
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          out += absl::StrFormat("\\x%02x", u);
        } else {
          out += c;  // UTF-8 passes through: YAML is UTF-8
        }
    }
  }
  return out + "\"";
}

// A scalar or an empty container, on one line; nullopt for others.
std::optional<std::string> YamlInline(const google::protobuf::Value& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kNullValue:
    case google::protobuf::Value::KIND_NOT_SET:
      return "null";
    case google::protobuf::Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case google::protobuf::Value::kNumberValue: {
      const double d = v.number_value();
      if (std::isnan(d)) return ".nan";
      if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
      if (d == std::trunc(d) && std::fabs(d) < 9007199254740992.0) {
        return absl::StrCat(static_cast<int64_t>(d));
      }
      return absl::StrFormat("%.17g", d);
    }
    case google::protobuf::Value::kStringValue:
      return YamlString(v.string_value());
    case google::protobuf::Value::kStructValue:
      if (v.struct_value().fields().empty()) return "{}";
      return std::nullopt;
    case google::protobuf::Value::kListValue:
      if (v.list_value().values().empty()) return "[]";
      return std::nullopt;
  }
  return "null";
}

void YamlList(const google::protobuf::ListValue& list, int indent,
              std::string* out);

// Each key at `indent`, sorted (a Struct keeps no order).
void YamlMap(const google::protobuf::Struct& s, int indent, std::string* out) {
  std::map<std::string, const google::protobuf::Value*> sorted;
  for (const auto& [k, v] : s.fields()) sorted[k] = &v;
  const std::string pad(indent, ' ');
  for (const auto& [k, v] : sorted) {
    absl::StrAppend(out, pad, YamlString(k), ":");
    if (auto line = YamlInline(*v)) {
      absl::StrAppend(out, " ", *line, "\n");
    } else if (v->has_struct_value()) {
      absl::StrAppend(out, "\n");
      YamlMap(v->struct_value(), indent + 2, out);
    } else {
      absl::StrAppend(out, "\n");
      YamlList(v->list_value(), indent, out);
    }
  }
}

void YamlList(const google::protobuf::ListValue& list, int indent,
              std::string* out) {
  const std::string pad(indent, ' ');
  for (const auto& v : list.values()) {
    if (auto line = YamlInline(v)) {
      absl::StrAppend(out, pad, "- ", *line, "\n");
    } else if (v.has_struct_value()) {
      // The first key on the dash's line: "- name: a\n  id: 1".
      std::string block;
      YamlMap(v.struct_value(), indent + 2, &block);
      absl::StrAppend(out, pad, "- ", block.substr(indent + 2));
    } else {
      absl::StrAppend(out, pad, "-\n");
      YamlList(v.list_value(), indent + 2, out);
    }
  }
}

}  // namespace

std::string ToYaml(const google::protobuf::Value& value) {
  std::string out;
  if (auto line = YamlInline(value)) {
    out = *line + "\n";
  } else if (value.has_struct_value()) {
    YamlMap(value.struct_value(), 0, &out);
  } else {
    YamlList(value.list_value(), 0, &out);
  }
  return out;
}

absl::StatusOr<google::protobuf::Value> MessageToValue(
    const google::protobuf::Message& message) {
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json,
                                                            JsonOptions());
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot convert to JSON: ", status.ToString()));
  }
  google::protobuf::Value value;
  status = google::protobuf::util::JsonStringToMessage(json, &value);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot parse own JSON: ", status.ToString()));
  }
  return value;
}

void PrintValue(const google::protobuf::Value& value,
                const std::string& format) {
  if (format == "yaml") {
    std::cout << ToYaml(value);
    return;
  }
  std::string out;
  auto status =
      google::protobuf::util::MessageToJsonString(value, &out, JsonOptions());
  if (!status.ok()) {
    Fail(absl::StrCat("cannot print JSON: ", status.ToString()));
    return;
  }
  PrintJsonText(out, std::cout);
}

bool PrintStructured(const google::protobuf::Message& message,
                     const std::string& format, std::ostream& out) {
  if (format == "json") {
    // Straight from the message, so fields keep their declaration order.
    std::string text;
    auto status = google::protobuf::util::MessageToJsonString(message, &text,
                                                              JsonOptions());
    if (!status.ok()) {
      Fail(absl::StrCat("cannot print JSON: ", status.ToString()));
    } else {
      PrintJsonText(text, out);
    }
    return true;
  }
  if (format == "yaml") {
    auto value = MessageToValue(message);
    if (!value.ok()) {
      Fail(value.status());
    } else {
      out << ToYaml(*value);
    }
    return true;
  }
  return false;
}

std::string StateName(varan::v1::PeripheryState s) {
  switch (s) {
    case varan::v1::PERIPHERY_STATE_ONLINE:
      return "online";
    case varan::v1::PERIPHERY_STATE_OFFLINE:
      return "offline";
    case varan::v1::PERIPHERY_STATE_REMOVED:
      return "removed";
    case varan::v1::PERIPHERY_STATE_UNSPECIFIED:
    case varan::v1::PeripheryState_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::PeripheryState_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  // Unspecified, or a state newer than this varanctl.
  return "unknown";
}

std::string ConnectionName(varan::v1::Connection c) {
  switch (c) {
    case varan::v1::CONNECTION_DIAL:
      return "dial";
    case varan::v1::CONNECTION_TUNNEL:
      return "tunnel";
    case varan::v1::CONNECTION_UNSPECIFIED:
    case varan::v1::Connection_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::Connection_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  // Unspecified, or a connection kind newer than this varanctl.
  return "unknown";
}

std::string LabelsText(
    const google::protobuf::Map<std::string, std::string>& m) {
  std::map<std::string, std::string> sorted(m.begin(), m.end());
  return sorted.empty() ? "<none>"
                        : absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

std::string Ago(const google::protobuf::Timestamp& t, absl::Time now) {
  if (t.seconds() == 0 && t.nanos() == 0) return "never";
  absl::Duration d = now - FromTimestamp(t);
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 120) return absl::StrCat(s, "s ago");
  if (s < 7200) return absl::StrCat(s / 60, "m ago");
  if (s < 172800) return absl::StrCat(s / 3600, "h ago");
  return absl::StrCat(s / 86400, "d ago");
}

void PrintTable(const std::vector<std::vector<std::string>>& rows,
                std::ostream& out) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

client::FollowOptions FollowOptionsFor(const client::CoreClient& client) {
  client::FollowOptions options;
  options.patience = absl::Seconds(60);
  options.on_resume = [address = client.address()](const std::string& job_id,
                                                   uint64_t next_sequence) {
    std::cerr << "varanctl: lost the stream from core at " << address
              << "; following job " << job_id << " again from event "
              << next_sequence << "\n";
  };
  return options;
}

}  // namespace varan::cli
