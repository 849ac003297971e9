#include "client/cli/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/secrets.h"
#include "toml++/toml.h"

namespace varan::cli {
namespace {

absl::StatusOr<std::string> ReadString(const toml::table& t,
                                       const std::string& key,
                                       const std::string& where) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return std::string();
  if (!n->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, key, ": expected a string"));
  }
  return std::string(n->as_string()->get());
}

}  // namespace

absl::StatusOr<ContextsFile> LoadContexts(const std::string& path) {
  ContextsFile out;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return out;
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  toml::table root;
  try {
    root = toml::parse(text.str(), path);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", std::string(e.description()), " (line ",
                     static_cast<uint32_t>(e.source().begin.line), ")"));
  }
  auto current = ReadString(root, "current-context", path + ": ");
  if (!current.ok()) return current.status();
  out.current = *current;
  const toml::node* contexts = root.get("contexts");
  if (contexts == nullptr) return out;
  if (!contexts->is_table()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": contexts: expected a table"));
  }
  for (const auto& [name, node] : *contexts->as_table()) {
    const std::string where =
        absl::StrCat(path, ": contexts.", std::string(name.str()), ".");
    if (!node.is_table()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where.substr(0, where.size() - 1), ": expected a table"));
    }
    const toml::table& t = *node.as_table();
    Context c;
    for (auto [key, field] :
         {std::pair{"core", &c.core}, std::pair{"token-file", &c.token_file},
          std::pair{"tls-ca", &c.tls_ca}, std::pair{"tls-cert", &c.tls_cert},
          std::pair{"tls-key", &c.tls_key},
          std::pair{"tls-server-name", &c.tls_server_name},
          std::pair{"ca-hash", &c.ca_hash}}) {
      auto v = ReadString(t, key, where);
      if (!v.ok()) return v.status();
      *field = *v;
    }
    out.contexts[std::string(name.str())] = c;
  }
  return out;
}

absl::Status SaveContexts(const std::string& path, const ContextsFile& file) {
  toml::table root;
  if (!file.current.empty()) root.insert("current-context", file.current);
  toml::table contexts;
  for (const auto& [name, c] : file.contexts) {
    toml::table t;
    if (!c.core.empty()) t.insert("core", c.core);
    if (!c.token_file.empty()) t.insert("token-file", c.token_file);
    if (!c.tls_ca.empty()) t.insert("tls-ca", c.tls_ca);
    if (!c.tls_cert.empty()) t.insert("tls-cert", c.tls_cert);
    if (!c.tls_key.empty()) t.insert("tls-key", c.tls_key);
    if (!c.tls_server_name.empty()) {
      t.insert("tls-server-name", c.tls_server_name);
    }
    if (!c.ca_hash.empty()) t.insert("ca-hash", c.ca_hash);
    contexts.insert(name, std::move(t));
  }
  root.insert("contexts", std::move(contexts));
  std::stringstream text;
  text << "# varanctl contexts (varanctl config --help)\n" << root << "\n";
  const std::string content = text.str();

  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    absl::Status s = EnsurePrivateDir(path.substr(0, slash));
    if (!s.ok()) return s;
  }
  return WritePrivateFile(path, content);
}

}  // namespace varan::cli
