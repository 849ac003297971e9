#include "client/cli/cli.h"

#include <cstdlib>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/secrets.h"
#include "common/time_util.h"
#include "google/protobuf/util/json_util.h"

namespace varan::cli {

void AddGlobalOptions(CLI::App& app, GlobalOptions* options) {
  app.add_option("--core", options->core,
                 "Core address, e.g. [::1]:7700 or core.example:7700")
      ->envname("VARAN_CORE")
      ->capture_default_str();
  app.add_option("--token-file", options->token_file,
                 "File holding an operator token (else VARAN_TOKEN_FILE, or "
                 "the token itself in VARAN_TOKEN)")
      ->envname("VARAN_TOKEN_FILE");
  app.add_option("--timeout", options->timeout_seconds,
                 "Seconds to wait for core to answer a request")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
}

absl::StatusOr<std::unique_ptr<client::CoreClient>> Connect(
    const GlobalOptions& options) {
  client::ClientOptions copts;
  copts.address = options.core;
  copts.timeout = absl::Seconds(options.timeout_seconds);
  if (!options.token_file.empty()) {
    auto token = ReadSecretFile(options.token_file);
    if (!token.ok()) return token.status();
    copts.token = *token;
  } else if (const char* t = std::getenv("VARAN_TOKEN"); t != nullptr && *t) {
    copts.token = t;
  } else {
    return absl::UnauthenticatedError(
        "no operator token: pass --token-file FILE or set VARAN_TOKEN_FILE "
        "or VARAN_TOKEN");
  }
  auto client = client::CoreClient::Create(copts);
  if (!client.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--core: ", client.status().message()));
  }
  return client;
}

int Fail(const absl::Status& status) {
  return Fail(std::string(status.message()));
}

int Fail(const std::string& message) {
  std::cerr << "varanctl: error: " << message << "\n";
  return kExitUsage;
}

CLI::Validator OutputFormat() { return CLI::IsMember({"table", "json"}); }

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

void PrintJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  std::string out;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &out, opts);
  if (!status.ok()) {
    std::cerr << "varanctl: error: cannot print JSON: " << status.ToString()
              << "\n";
    return;
  }
  std::cout << out;
  if (out.empty() || out.back() != '\n') std::cout << "\n";
}

std::string Ago(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "never";
  absl::Duration d = absl::Now() - FromTimestamp(t);
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 120) return absl::StrCat(s, "s ago");
  if (s < 7200) return absl::StrCat(s / 60, "m ago");
  if (s < 172800) return absl::StrCat(s / 3600, "h ago");
  return absl::StrCat(s / 86400, "d ago");
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
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
    std::cout << line << "\n";
  }
}

}  // namespace varan::cli
