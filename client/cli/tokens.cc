// varanctl tokens create|list|revoke and join-tokens create|list|revoke
#include <iostream>

#include "absl/strings/str_cat.h"
#include "client/cli/cli.h"
#include "common/time_util.h"

namespace varan::cli {
namespace {

std::string RoleText(varan::v1::Role r) {
  switch (r) {
    case varan::v1::ROLE_VIEWER:
      return "viewer";
    case varan::v1::ROLE_OPERATOR:
      return "operator";
    case varan::v1::ROLE_ADMIN:
      return "admin";
    case varan::v1::ROLE_UNSPECIFIED:
    case varan::v1::Role_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::Role_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  // Unspecified, or a role newer than this varanctl.
  return "unknown";
}

std::string TokenStateText(varan::v1::TokenState s) {
  switch (s) {
    case varan::v1::TOKEN_STATE_ACTIVE:
      return "active";
    case varan::v1::TOKEN_STATE_EXPIRED:
      return "expired";
    case varan::v1::TOKEN_STATE_REVOKED:
      return "revoked";
    case varan::v1::TOKEN_STATE_USED_UP:
      return "used up";
    case varan::v1::TOKEN_STATE_UNSPECIFIED:
    case varan::v1::TokenState_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::TokenState_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  // Unspecified, or a state newer than this varanctl.
  return "unknown";
}

// "in 29d", "3h ago" (past), "never" (unset).
std::string Expiry(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "never";
  const absl::Duration d = FromTimestamp(t) - absl::Now();
  if (d <= absl::ZeroDuration()) return Ago(t);
  // Rounded to the nearest unit: a token made with --ttl 24h reads "in
  // 24h", not "in 23h", a moment later.
  const int64_t s = absl::ToInt64Seconds(d + absl::Milliseconds(500));
  if (s < 120) return absl::StrCat("in ", s, "s");
  if (s < 7200) return absl::StrCat("in ", (s + 30) / 60, "m");
  if (s < 172800) return absl::StrCat("in ", (s + 1800) / 3600, "h");
  return absl::StrCat("in ", (s + 43200) / 86400, "d");
}

absl::StatusOr<varan::v1::Role> ParseRole(const std::string& text) {
  if (text == "viewer") return varan::v1::ROLE_VIEWER;
  if (text == "operator") return varan::v1::ROLE_OPERATOR;
  if (text == "admin") return varan::v1::ROLE_ADMIN;
  return absl::InvalidArgumentError(absl::StrCat(
      "--role \"", text, "\": expected viewer, operator or admin"));
}

// Sets `*out` from a --ttl value; "0" or "never" leave it unset.
absl::Status SetTtl(const std::string& text, google::protobuf::Duration* out) {
  if (text.empty() || text == "0" || text == "never") return absl::OkStatus();
  auto d = ParseAge(text);
  if (!d.ok()) return d.status();
  SetDuration(*d, out);
  return absl::OkStatus();
}

struct CreateOptions {
  std::string name;
  std::string role;
  std::string ttl;
  uint32_t uses = 1;
  std::string output = "table";
};

int RunCreateToken(const GlobalOptions& global, const CreateOptions& opts) {
  varan::v1::CreateTokenRequest req;
  req.set_name(opts.name);
  auto role = ParseRole(opts.role);
  if (!role.ok()) return Fail(role.status());
  req.set_role(*role);
  if (absl::Status s = SetTtl(opts.ttl, req.mutable_ttl()); !s.ok()) {
    return Fail(absl::StrCat("--ttl: ", s.message()));
  }
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto resp = (*client)->CreateToken(req);
  if (!resp.ok()) return Fail(resp.status());
  if (PrintStructured(*resp, opts.output)) return 0;
  // The secret alone on stdout, so `> file` captures just the token.
  std::cout << resp->secret() << "\n";
  std::cerr << "token \"" << resp->token().name() << "\" ("
            << RoleText(resp->token().role()) << ", expires "
            << Expiry(resp->token().expire_time())
            << ") created; it is shown only this once: store it now (mode "
               "0600), e.g. varanctl tokens create ... > ci.token\n";
  return 0;
}

int RunListTokens(const GlobalOptions& global, bool include_revoked,
                  const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto list = (*client)->ListTokens(include_revoked);
  if (!list.ok()) return Fail(list.status());
  varan::v1::ListTokensResponse resp;
  for (const auto& t : *list) *resp.add_tokens() = t;
  if (PrintStructured(resp, output)) return 0;
  const bool wide = output == "wide";
  std::vector<std::vector<std::string>> rows;
  if (wide) {
    rows.push_back({"NAME", "ID", "ROLE", "STATE", "CREATED", "EXPIRES",
                    "CREATED BY", "REVOKED BY"});
  } else {
    rows.push_back(
        {"NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "CREATED BY"});
  }
  for (const auto& t : *list) {
    const std::string created_by =
        t.bootstrap() ? absl::StrCat("file ", t.created_by()) : t.created_by();
    if (wide) {
      rows.push_back({t.name(), t.id(), RoleText(t.role()),
                      TokenStateText(t.state()), Ago(t.create_time()),
                      Expiry(t.expire_time()), created_by, t.revoked_by()});
    } else {
      rows.push_back({t.name(), RoleText(t.role()), TokenStateText(t.state()),
                      Ago(t.create_time()), Expiry(t.expire_time()),
                      created_by});
    }
  }
  PrintTable(rows);
  return 0;
}

int RunRevokeToken(const GlobalOptions& global, const std::string& name,
                   const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto t = (*client)->RevokeToken(name);
  if (!t.ok()) return Fail(t.status());
  if (PrintStructured(*t, output)) return 0;
  std::cout << "revoked token " << t->name() << " (id " << t->id() << ")\n";
  return 0;
}

int RunCreateJoinToken(const GlobalOptions& global, const CreateOptions& opts) {
  varan::v1::CreateJoinTokenRequest req;
  req.set_name(opts.name);
  req.set_max_uses(opts.uses);
  if (absl::Status s = SetTtl(opts.ttl, req.mutable_ttl()); !s.ok()) {
    return Fail(absl::StrCat("--ttl: ", s.message()));
  }
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto resp = (*client)->CreateJoinToken(req);
  if (!resp.ok()) return Fail(resp.status());
  if (PrintStructured(*resp, opts.output)) return 0;
  const auto& j = resp->join_token();
  // With core's CA pin when it has one: what a new periphery needs.
  std::cout << (resp->token().empty() ? resp->secret() : resp->token()) << "\n";
  std::cerr << "join token \"" << j.name() << "\" ("
            << (j.max_uses() == 0 ? std::string("unlimited")
                                  : absl::StrCat(j.max_uses()))
            << " registration(s), expires " << Expiry(j.expire_time())
            << ") created; it is shown only this once: put it in a file "
               "(mode 0600) for varan-periphery --join-token-file\n";
  return 0;
}

int RunListJoinTokens(const GlobalOptions& global, bool include_revoked,
                      const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto list = (*client)->ListJoinTokens(include_revoked);
  if (!list.ok()) return Fail(list.status());
  varan::v1::ListJoinTokensResponse resp;
  for (const auto& t : *list) *resp.add_join_tokens() = t;
  if (PrintStructured(resp, output)) return 0;
  const bool wide = output == "wide";
  std::vector<std::vector<std::string>> rows;
  if (wide) {
    rows.push_back({"NAME", "ID", "STATE", "USES", "CREATED", "EXPIRES",
                    "CREATED BY", "REVOKED BY"});
  } else {
    rows.push_back({"NAME", "STATE", "USES", "CREATED", "EXPIRES"});
  }
  for (const auto& t : *list) {
    const std::string uses = t.max_uses() == 0
                                 ? absl::StrCat(t.uses(), "/unlimited")
                                 : absl::StrCat(t.uses(), "/", t.max_uses());
    if (wide) {
      const std::string created_by = t.bootstrap()
                                         ? absl::StrCat("file ", t.created_by())
                                         : t.created_by();
      rows.push_back({t.name(), t.id(), TokenStateText(t.state()), uses,
                      Ago(t.create_time()), Expiry(t.expire_time()), created_by,
                      t.revoked_by()});
    } else {
      rows.push_back({t.name(), TokenStateText(t.state()), uses,
                      Ago(t.create_time()), Expiry(t.expire_time())});
    }
  }
  PrintTable(rows);
  return 0;
}

int RunRevokeJoinToken(const GlobalOptions& global, const std::string& name,
                       const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto t = (*client)->RevokeJoinToken(name);
  if (!t.ok()) return Fail(t.status());
  if (PrintStructured(*t, output)) return 0;
  std::cout << "revoked join token " << t->name() << " (id " << t->id()
            << ")\n";
  return 0;
}

// list and revoke, which both kinds of token have alike.
template <typename ListFn, typename RevokeFn>
void AddListAndRevoke(CLI::App* cmd, GlobalOptions* global, int* exit_code,
                      const std::string& what, const std::string& example,
                      ListFn list_fn, RevokeFn revoke_fn) {
  auto include_revoked = std::make_shared<bool>(false);
  auto list_output = std::make_shared<std::string>("table");
  CLI::App* list = cmd->add_subcommand("list", "List " + what + "s");
  list->alias("ls");
  list->add_flag("--include-revoked", *include_revoked,
                 "Also list revoked " + what + "s");
  list->add_option("-o,--output", *list_output, kOutputHelp)
      ->check(OutputFormat());
  list->footer("Example:\n  varanctl " + example + " list -o wide");
  list->callback([global, include_revoked, list_output, exit_code, list_fn] {
    *exit_code = list_fn(*global, *include_revoked, *list_output);
  });

  auto name = std::make_shared<std::string>();
  auto revoke_output = std::make_shared<std::string>("table");
  CLI::App* revoke =
      cmd->add_subcommand("revoke", "Revoke a " + what + " at once");
  revoke->add_option("name", *name, what + " name or id")->required();
  revoke->add_option("-o,--output", *revoke_output, kOutputHelp)
      ->check(OutputFormat());
  revoke->footer("Example:\n  varanctl " + example + " revoke ci");
  revoke->callback([global, name, revoke_output, exit_code, revoke_fn] {
    *exit_code = revoke_fn(*global, *name, *revoke_output);
  });
}

}  // namespace

void SetupTokens(CLI::App& app, GlobalOptions* global, int* exit_code) {
  CLI::App* cmd =
      app.add_subcommand("tokens",
                         "Create, list and revoke operator tokens (needs an "
                         "admin token)")
          ->require_subcommand(1);
  auto opts = std::make_shared<CreateOptions>();
  CLI::App* create = cmd->add_subcommand(
      "create", "Create an operator token; prints it once on stdout");
  create
      ->add_option("--name", opts->name,
                   "Token name, recorded on the jobs it runs")
      ->required();
  create
      ->add_option("--role", opts->role,
                   "viewer (read), operator (also exec and cancel) or admin "
                   "(also tokens and removing peripheries)")
      ->required()
      ->check(CLI::IsMember({"viewer", "operator", "admin"}));
  create->add_option("--ttl", opts->ttl,
                     "Lifetime, e.g. 12h, 30d or 1d12h (default: never "
                     "expires)");
  create->add_option("-o,--output", opts->output, kOutputHelp)
      ->check(OutputFormat());
  create->footer(
      "The token is printed once, alone on stdout (details on stderr); core "
      "keeps only its hash.\n\nExample:\n"
      "  varanctl tokens create --name ci --role operator --ttl 30d > "
      "ci.token");
  create->callback([global, opts, exit_code] {
    *exit_code = RunCreateToken(*global, *opts);
  });
  AddListAndRevoke(cmd, global, exit_code, "token", "tokens", RunListTokens,
                   RunRevokeToken);
}

void SetupJoinTokens(CLI::App& app, GlobalOptions* global, int* exit_code) {
  CLI::App* cmd =
      app.add_subcommand("join-tokens",
                         "Create, list and revoke join tokens for new "
                         "peripheries (needs an admin token)")
          ->require_subcommand(1);
  auto opts = std::make_shared<CreateOptions>();
  opts->ttl = "24h";
  CLI::App* create = cmd->add_subcommand(
      "create", "Create a join token; prints it once on stdout");
  create->add_option("--name", opts->name, "Name (default: its id)");
  create
      ->add_option("--ttl", opts->ttl,
                   "Lifetime, e.g. 1h or 7d; 0 never expires")
      ->capture_default_str();
  create
      ->add_option("--uses", opts->uses,
                   "Registrations it allows; 0 means no limit")
      ->capture_default_str();
  create->add_option("-o,--output", opts->output, kOutputHelp)
      ->check(OutputFormat());
  create->footer(
      "A periphery registers once with it (varan-periphery "
      "--join-token-file) and then uses its own credential; revoking the "
      "join token does not affect peripheries that joined with it.\n\n"
      "Example:\n"
      "  varanctl join-tokens create --name rack-7 --ttl 2h --uses 20 > "
      "join.token");
  create->callback([global, opts, exit_code] {
    *exit_code = RunCreateJoinToken(*global, *opts);
  });
  AddListAndRevoke(cmd, global, exit_code, "join token", "join-tokens",
                   RunListJoinTokens, RunRevokeJoinToken);
}

}  // namespace varan::cli
