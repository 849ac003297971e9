// The Kubernetes manifests start the real binaries. For the base and each
// overlay of deploy/kubernetes/, rendered by deploy/kubernetes/render.js,
// this takes every container's command, args and env exactly as written and
// starts the binaries on loopback. Only ports and paths are remapped: each
// container port to a free port, each volume mount path to a directory of
// the test (ConfigMaps and Secrets become files there, as the kubelet
// writes them), and the core Service's DNS name to loopback. Then core must
// serve grpc.health.v1 on the port its probes check, and the periphery must
// register through the Service address and run a command. A flag the
// binaries do not accept, a probe on the wrong port, or a path outside a
// volume (the root filesystem is read-only) fails here.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/secrets.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

using ::google::protobuf::Value;
using ::testing::HasSubstr;

const std::string kSourceDir = VARAN_SOURCE_DIR;
const std::string kNodeDir = VARAN_DEPLOY_NODE_DIR;
// What the downward API gives the periphery's pod in this test.
const std::string kNodeName = "node-1";
// Where core keeps the join token it writes, its CA's pin after the secret:
// what README "Deploying" has the operator read (kubectl exec).
const std::string kCoreJoinTokenPath = "/var/lib/varan/core/join.token";

// Installs the renderer's npm packages (tests/deploy/npm-install.sh: npm ci
// from deploy/kubernetes/package-lock.json into the build dir).
::testing::AssertionResult EnsureNodeModules() {
  RunResult r = RunProgram({kSourceDir + "/tests/deploy/npm-install.sh",
                            VARAN_NODE, VARAN_NPM, kSourceDir, kNodeDir},
                           {}, absl::Minutes(3));
  if (r.exit_code != 0) {
    return ::testing::AssertionFailure()
           << "npm-install.sh exited with " << r.exit_code << ":\n"
           << r.out << r.err;
  }
  return ::testing::AssertionSuccess();
}

// --- Reading the rendered objects (JSON in a protobuf Value) ------------

const Value& Null() {
  static const Value* null = new Value();
  return *null;
}

// v[key], or a null value when v is no object or has no such key.
const Value& Get(const Value& v, const std::string& key) {
  if (!v.has_struct_value()) return Null();
  const auto& fields = v.struct_value().fields();
  auto it = fields.find(key);
  return it == fields.end() ? Null() : it->second;
}

// Follows a path of keys ("spec.template.spec").
const Value& At(const Value& v, const std::string& path) {
  const Value* cur = &v;
  for (absl::string_view key : absl::StrSplit(path, '.')) {
    cur = &Get(*cur, std::string(key));
  }
  return *cur;
}

std::vector<const Value*> List(const Value& v) {
  std::vector<const Value*> out;
  if (v.has_list_value()) {
    for (const Value& e : v.list_value().values()) out.push_back(&e);
  }
  return out;
}

std::string Str(const Value& v) {
  return v.has_string_value() ? v.string_value() : "";
}

int Int(const Value& v) {
  return v.has_number_value() ? static_cast<int>(v.number_value()) : -1;
}

// The first element of `list` whose `key` is `value`, or null.
const Value& FindBy(const Value& list, const std::string& key,
                    const std::string& value) {
  for (const Value* e : List(list)) {
    if (Str(Get(*e, key)) == value) return *e;
  }
  return Null();
}

const Value& FindObject(const Value& objects, const std::string& kind,
                        const std::string& name) {
  for (const Value* o : List(objects)) {
    if (Str(Get(*o, "kind")) == kind && Str(At(*o, "metadata.name")) == name) {
      return *o;
    }
  }
  return Null();
}

// --- Remapping ports and paths ------------------------------------------

bool IsPathChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '/' ||
         c == '.' || c == '_' || c == '-';
}

// Rewrites container ports and volume mount paths to the test's own, in
// one pass (so a rewritten path is never rewritten again).
class Remap {
 public:
  explicit Remap(std::string root) : root_(std::move(root)) {}

  void AddPort(int from, int to) { ports_[absl::StrCat(":", from)] = to; }
  void AddPath(const std::string& mount_path) {
    paths_.push_back(mount_path);
    // Longest first, so /var/lib/varan/x wins over /var/lib/varan.
    std::sort(paths_.begin(), paths_.end(),
              [](const std::string& a, const std::string& b) {
                return a.size() > b.size();
              });
  }
  std::string Path(const std::string& mount_path) const {
    return root_ + mount_path;
  }
  const std::string& root() const { return root_; }
  // Whether container port `port` was found (and rewritten) by Apply.
  bool Used(int port) const {
    return used_ports_.count(absl::StrCat(":", port)) > 0;
  }

  std::string Apply(const std::string& s) const {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      bool replaced = false;
      for (const auto& [from, to] : ports_) {
        size_t end = i + from.size();
        if (s.compare(i, from.size(), from) == 0 &&
            (end == s.size() || !absl::ascii_isdigit(s[end]))) {
          absl::StrAppend(&out, ":", to);
          used_ports_.insert(from);
          i = end;
          replaced = true;
          break;
        }
      }
      if (replaced) continue;
      if (i == 0 || !IsPathChar(s[i - 1])) {
        for (const auto& p : paths_) {
          size_t end = i + p.size();
          if (s.compare(i, p.size(), p) == 0 &&
              (end == s.size() || s[end] == '/' || !IsPathChar(s[end]))) {
            out += root_ + p;
            i = end;
            replaced = true;
            break;
          }
        }
      }
      if (!replaced) out += s[i++];
    }
    return out;
  }

  // Absolute paths in `s` that are not under the test's root: places the
  // container would write or read outside its volumes.
  std::vector<std::string> PathsOutsideVolumes(const std::string& s) const {
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '/' || (i > 0 && IsPathChar(s[i - 1]))) continue;
      size_t end = i;
      while (end < s.size() && IsPathChar(s[end])) ++end;
      std::string path = s.substr(i, end - i);
      if (path.size() > 1 && !absl::StartsWith(path, root_)) {
        out.push_back(path);
      }
      i = end;
    }
    return out;
  }

 private:
  std::string root_;
  std::map<std::string, int> ports_;
  std::vector<std::string> paths_;
  mutable std::set<std::string> used_ports_;
};

// A TOML file without its comments (they may name paths in prose).
std::string WithoutComments(const std::string& toml) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(toml, '\n')) {
    if (!absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "#")) {
      lines.emplace_back(line);
    }
  }
  return absl::StrJoin(lines, "\n");
}

// Kubernetes' $(VAR) expansion of command and args from the container's env
// ($$ is a literal $; an undefined $(VAR) stays as written).
std::string Expand(const std::string& s,
                   const std::map<std::string, std::string>& env) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 2, "$$") == 0) {
      out += '$';
      ++i;
    } else if (s.compare(i, 2, "$(") == 0) {
      size_t close = s.find(')', i);
      auto it = close == std::string::npos
                    ? env.end()
                    : env.find(s.substr(i + 2, close - i - 2));
      if (it == env.end()) {
        out += s[i];
      } else {
        out += it->second;
        i = close;
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

// `program` as a path: itself when absolute, else found on PATH (or "").
std::string FindProgram(const std::string& program) {
  if (absl::StartsWith(program, "/")) return program;
  const char* path = getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    std::string candidate = absl::StrCat(dir, "/", program);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  ADD_FAILURE() << program << " is not on PATH";
  return program;
}

// --- Turning a pod template into a process --------------------------------

// Secret contents the test provisions: secret name -> key -> content.
using Secrets = std::map<std::string, std::map<std::string, std::string>>;

struct Launch {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::unique_ptr<Remap> remap;
  std::map<int, int> ports;  // container port -> test port
};

// Prepares the container `container_name` of the pod template of `workload`
// in `objects`: its volumes as directories and files under `root`, its
// argv and env remapped. `services` maps "name.namespace.svc:port" (and the
// .cluster.local form) to the loopback address that stands for it.
// Failures are added to the test (ADD_FAILURE) with what is wrong.
Launch Prepare(const Value& objects, const Value& workload,
               const std::string& container_name, const std::string& root,
               const Secrets& secrets,
               const std::map<std::string, std::string>& services) {
  Launch launch;
  launch.remap = std::make_unique<Remap>(root);
  Remap& remap = *launch.remap;
  const Value& pod = At(workload, "spec.template.spec");
  const Value* found = &FindBy(Get(pod, "containers"), "name", container_name);
  if (!found->has_struct_value()) {
    found = &FindBy(Get(pod, "initContainers"), "name", container_name);
  }
  const Value& c = *found;
  if (!c.has_struct_value()) {
    ADD_FAILURE() << "no container " << container_name;
    return launch;
  }
  const std::string ns = Str(At(workload, "metadata.namespace"));

  for (const Value* port : List(Get(c, "ports"))) {
    int from = Int(Get(*port, "containerPort"));
    int to = FreePort();
    remap.AddPort(from, to);
    launch.ports[from] = to;
  }

  // Volumes. A mount of a ConfigMap or Secret becomes its files; anything
  // else an empty directory, as on a new node.
  std::map<std::string, std::string> config_files;  // path -> content
  for (const Value* mount : List(Get(c, "volumeMounts"))) {
    const std::string name = Str(Get(*mount, "name"));
    const std::string path = Str(Get(*mount, "mountPath"));
    EXPECT_TRUE(Get(*mount, "subPath").kind_case() == Value::KIND_NOT_SET)
        << "subPath mounts are not supported by this test: " << name;
    remap.AddPath(path);
    std::filesystem::create_directories(remap.Path(path));
    const Value* volume = &FindBy(Get(pod, "volumes"), "name", name);
    if (!volume->has_struct_value()) {
      for (const Value* claim :
           List(At(workload, "spec.volumeClaimTemplates"))) {
        if (Str(At(*claim, "metadata.name")) == name) volume = claim;
      }
    }
    if (!volume->has_struct_value()) {
      ADD_FAILURE() << "no volume " << name;
      return launch;
    }
    if (const Value& cm = Get(*volume, "configMap"); cm.has_struct_value()) {
      const Value& map = FindObject(objects, "ConfigMap", Str(Get(cm, "name")));
      if (!map.has_struct_value()) {
        ADD_FAILURE() << "ConfigMap " << Str(Get(cm, "name"))
                      << " is not in the overlay";
        return launch;
      }
      for (const auto& [key, content] :
           Get(map, "data").struct_value().fields()) {
        config_files[remap.Path(path) + "/" + key] = content.string_value();
      }
    } else if (const Value& secret = Get(*volume, "secret");
               secret.has_struct_value()) {
      auto it = secrets.find(Str(Get(secret, "secretName")));
      // An optional Secret that does not exist: an empty directory, as
      // Kubernetes mounts it (the test provisions only the required ones).
      if (it == secrets.end() && Get(secret, "optional").bool_value()) {
        continue;
      }
      if (it == secrets.end()) {
        ADD_FAILURE() << "the test provisions no Secret "
                      << Str(Get(secret, "secretName"));
        return launch;
      }
      for (const auto& [key, content] : it->second) {
        std::string file = remap.Path(path) + "/" + key;
        WriteFile(file, content + "\n");
        int mode = Int(Get(secret, "defaultMode"));
        chmod(file.c_str(), mode < 0 ? 0644 : mode);
      }
    } else {
      EXPECT_TRUE(Get(*volume, "emptyDir").has_struct_value() ||
                  Get(*volume, "hostPath").has_struct_value() ||
                  Get(*volume, "spec").has_struct_value())
          << "volume " << name << " is of a kind this test does not know";
    }
  }
  // ConfigMap files, remapped like the arguments (they configure the same
  // flags), once every mount path is known.
  for (const auto& [file, text] : config_files) {
    std::string content = remap.Apply(text);
    for (const std::string& p :
         remap.PathsOutsideVolumes(WithoutComments(content))) {
      ADD_FAILURE() << file << " names " << p << ", which is on no volume";
    }
    WriteFile(file, content);
  }

  // Environment: values, and the downward API fields this test stands in for.
  for (const Value* e : List(Get(c, "env"))) {
    const std::string name = Str(Get(*e, "name"));
    if (Get(*e, "value").has_string_value()) {
      launch.env[name] = Str(Get(*e, "value"));
      continue;
    }
    const std::string field = Str(At(*e, "valueFrom.fieldRef.fieldPath"));
    if (field == "spec.nodeName") {
      launch.env[name] = kNodeName;
    } else if (field == "metadata.namespace") {
      launch.env[name] = ns;
    } else {
      ADD_FAILURE() << "env " << name << ": a source this test does not know";
    }
  }

  // Command and args, $(VAR)-expanded, the Service names and then ports and
  // paths remapped. The binary is the one built here, by its name.
  std::vector<std::string> words;
  for (const char* key : {"command", "args"}) {
    for (const Value* w : List(Get(c, key))) {
      words.push_back(Expand(Str(*w), launch.env));
    }
  }
  if (words.empty()) {
    ADD_FAILURE() << container_name << " has no command";
    return launch;
  }
  // Varan's binaries are the ones built here (the images install them in
  // /usr/local/bin); other programs come from the system, as in the image.
  const std::string program =
      std::filesystem::path(words[0]).filename().string();
  if (absl::StartsWith(program, "varan")) {
    EXPECT_EQ(words[0], "/usr/local/bin/" + program)
        << "the images install the binaries in /usr/local/bin";
    launch.argv.push_back(BinPath(program));
  } else {
    launch.argv.push_back(FindProgram(words[0]));
  }
  for (size_t i = 1; i < words.size(); ++i) {
    std::string w = words[i];
    for (const auto& [service, address] : services) {
      size_t at = w.find(service);
      if (at != std::string::npos) w.replace(at, service.size(), address);
    }
    w = remap.Apply(w);
    for (const std::string& p : remap.PathsOutsideVolumes(w)) {
      ADD_FAILURE() << "argument " << words[i] << " names " << p
                    << ", which is on no volume";
    }
    launch.argv.push_back(w);
  }
  for (auto& [name, value] : launch.env) {
    value = remap.Apply(value);
    for (const std::string& p : remap.PathsOutsideVolumes(value)) {
      ADD_FAILURE() << "env " << name << " names " << p
                    << ", which is on no volume";
    }
  }
  // A port the binary would only take from its built-in default cannot be
  // moved by the test, and the manifest would not say where it listens.
  for (const auto& [from, to] : launch.ports) {
    if (!remap.Used(from)) {
      ADD_FAILURE() << container_name << ": container port " << from
                    << " is set by no argument, env value or config file";
    }
  }
  return launch;
}

// A kustomization directory under deploy/kubernetes/.
struct Kustomization {
  std::string dir;
};

// Names the case in test output; ctest then names the tests
// Kustomizations/DeploySmokeTest.<Test>/<dir>.
void PrintTo(const Kustomization& k, std::ostream* os) { *os << k.dir; }

class DeploySmokeTest : public ::testing::TestWithParam<Kustomization> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(EnsureNodeModules());
    RunResult r = RunProgram(
        {VARAN_NODE, kSourceDir + "/deploy/kubernetes/render.js", "--json",
         kSourceDir + "/deploy/kubernetes/" + GetParam().dir},
        {{"NODE_PATH", kNodeDir + "/node_modules"}});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto parsed = google::protobuf::util::JsonStringToMessage(r.out, &objects_);
    ASSERT_TRUE(parsed.ok()) << parsed.ToString();
  }

  Value objects_;
  TempDir dir_;
};

TEST_P(DeploySmokeTest, CoreServesHealthAndAPeripheryConnects) {
  const Value& sts = FindObject(objects_, "StatefulSet", "varan-core");
  const Value& ds = FindObject(objects_, "DaemonSet", "varan-periphery");
  const Value& service = FindObject(objects_, "Service", "varan-core");
  ASSERT_TRUE(sts.has_struct_value() && ds.has_struct_value() &&
              service.has_struct_value());

  // The Secrets an operator creates before deploying: the join token (for
  // core and the peripheries; the pin of core's CA is added once core has
  // made it, below) and an admin token. With the default overlay, the CA is
  // made ahead of time too (varanctl ca init, the Secret varan-ca), so the
  // join token carries its pin from the start (README "Kubernetes").
  const bool ca_ahead = GetParam().dir == "overlays/dual-stack";
  const std::string join_secret = GenerateSecret();
  Secrets secrets = {{"varan-join-token", {{"token", join_secret}}},
                     {"varan-admin-token", {{"token", GenerateSecret()}}}};
  std::string ahead_pin;
  if (ca_ahead) {
    const std::string pki = dir_.File("operator-pki");
    RunResult made =
        RunProgram({BinPath("varanctl"), "ca", "init", pki, "--pin-only"});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    ahead_pin = std::string(absl::StripAsciiWhitespace(made.out));
    secrets["varan-ca"] = {{"ca.crt", ReadFile(pki + "/ca.crt")},
                           {"ca.key", ReadFile(pki + "/ca.key")}};
    secrets["varan-join-token"]["token"] =
        absl::StrCat(join_secret, ".", ahead_pin);
  }
  const std::string admin_token_file = dir_.File("admin.token");
  WriteFile(admin_token_file, secrets.at("varan-admin-token").at("token"));

  // Core, with the flags of its StatefulSet.
  Launch core = Prepare(objects_, sts, "core", dir_.File("core"), secrets, {});
  ASSERT_FALSE(HasFailure());
  Daemon core_daemon(core.argv, dir_.File("core.log"), core.env);
  core_daemon.Start();

  // Its probes' port (plaintext: kubelet's gRPC probes speak no TLS), on
  // the families the Service offers.
  const Value& container =
      FindBy(At(sts, "spec.template.spec.containers"), "name", "core");
  const int probe_port = Int(At(container, "readinessProbe.grpc.port"));
  ASSERT_TRUE(core.ports.count(probe_port))
      << "the probe checks port " << probe_port << ", not a "
      << "container port";
  for (const char* probe : {"startupProbe", "livenessProbe"}) {
    EXPECT_EQ(Int(At(container, std::string(probe) + ".grpc.port")),
              probe_port);
  }
  std::vector<std::string> families;
  for (const Value* f : List(At(service, "spec.ipFamilies"))) {
    families.push_back(Str(*f));
  }
  const bool ipv6_only = families == std::vector<std::string>{"IPv6"};
  const int health = core.ports[probe_port];
  ASSERT_TRUE(WaitFor([&] {
    return !core_daemon.Running() || Healthy(absl::StrCat("[::1]:", health));
  })) << core_daemon.Log();
  ASSERT_TRUE(core_daemon.Running()) << core_daemon.Log();
  if (!ipv6_only) {
    EXPECT_TRUE(Healthy(absl::StrCat("127.0.0.1:", health)))
        << "core does not serve IPv4";
  }

  // The operator's next step (README "Deploying"): the pin of the CA core
  // made, from the join token core wrote in its data directory, goes into
  // the join-token Secret after the secret.
  const std::string written = ReadFile(core.remap->Apply(kCoreJoinTokenPath));
  const size_t dot = written.find('.');
  ASSERT_NE(dot, std::string::npos) << kCoreJoinTokenPath << ": " << written;
  const std::string pin(absl::StripAsciiWhitespace(written.substr(dot + 1)));
  ASSERT_TRUE(absl::StartsWith(pin, "sha256:")) << pin;
  if (ca_ahead) {
    EXPECT_EQ(pin, ahead_pin) << "core took the Secret's CA";
  }
  ClientTlsFiles pinned;
  pinned.ca_pin = pin;

  // The Service leads to core's own port (its targetPort names the
  // container port), which serves TLS only, from that CA.
  const Value& service_port = *List(At(service, "spec.ports")).at(0);
  const Value& target = FindBy(Get(container, "ports"), "name",
                               Str(Get(service_port, "targetPort")));
  const int port = core.ports[Int(Get(target, "containerPort"))];
  ASSERT_NE(port, 0) << "the Service's targetPort is no container port";
  const std::string v6 = absl::StrCat("[::1]:", port);
  const std::string v4 = absl::StrCat("127.0.0.1:", port);
  EXPECT_TRUE(Healthy(v6, pinned)) << core_daemon.Log();
  EXPECT_FALSE(Healthy(v6)) << "core's port serves plaintext";
  if (!ipv6_only) {
    EXPECT_TRUE(Healthy(v4, pinned)) << "core does not serve IPv4";
  }
  const std::string ns = Str(At(service, "metadata.namespace"));
  const std::string dns =
      absl::StrCat(Str(At(service, "metadata.name")), ".", ns, ".svc");
  const std::string service_port_str =
      absl::StrCat(":", Int(Get(service_port, "port")));
  const std::string loopback = ipv6_only ? v6 : v4;
  std::map<std::string, std::string> services = {
      {dns + ".cluster.local" + service_port_str, loopback},
      {dns + service_port_str, loopback}};

  // The periphery's init containers, then the periphery, with the flags of
  // its DaemonSet; they share the pod's volumes. One waits for the Secret
  // to carry the pin: it is started before the pin is there, and ends
  // once the Secret has it (as the kubelet refreshes a mounted Secret).
  const Secrets with_pin = [&] {
    Secrets s = secrets;
    s["varan-join-token"]["token"] = absl::StrCat(join_secret, ".", pin);
    return s;
  }();
  for (const Value* init : List(At(ds, "spec.template.spec.initContainers"))) {
    const std::string name = Str(Get(*init, "name"));
    Launch step =
        Prepare(objects_, ds, name, dir_.File("periphery"), secrets, services);
    ASSERT_FALSE(HasFailure());
    Daemon d(step.argv, dir_.File(name + ".log"), step.env);
    d.Start();
    if (d.Wait(absl::Seconds(2)) == -1) {
      // Still waiting: the Secret gets the pin.
      ASSERT_EQ(name, "core-pin") << d.Log();
      ASSERT_FALSE(ca_ahead) << "the Secret had the pin already";
      Launch refreshed = Prepare(objects_, ds, name, dir_.File("periphery"),
                                 with_pin, services);
      ASSERT_FALSE(HasFailure());
    } else if (!ca_ahead) {
      EXPECT_NE(name, "core-pin") << "it did not wait for the pin";
    }
    ASSERT_EQ(d.Wait(absl::Seconds(15)), 0)
        << "init container " << name << ": " << d.Log();
  }
  Launch periphery = Prepare(objects_, ds, "periphery", dir_.File("periphery"),
                             with_pin, services);
  ASSERT_FALSE(HasFailure());
  Daemon periphery_daemon(periphery.argv, dir_.File("periphery.log"),
                          periphery.env);
  periphery_daemon.Start();

  auto ctl = [&](std::vector<std::string> args) {
    // An operator's varanctl knows core's CA by its pin.
    std::vector<std::string> argv = {
        BinPath("varanctl"), "--core",    v6, "--token-file",
        admin_token_file,    "--ca-hash", pin};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(
        argv,
        {{"VARAN_CORE", ""}, {"VARAN_TOKEN", ""}, {"VARAN_TOKEN_FILE", ""}});
  };
  bool online = WaitFor(
      [&] {
        if (!periphery_daemon.Running()) return true;
        RunResult r = ctl({"peripheries", "get", kNodeName, "-o", "json"});
        return r.exit_code == 0 &&
               absl::StrContains(r.out, "PERIPHERY_STATE_ONLINE");
      },
      absl::Seconds(20));
  ASSERT_TRUE(online && periphery_daemon.Running())
      << "periphery log:\n"
      << periphery_daemon.Log() << "\ncore log:\n"
      << core_daemon.Log();

  // Its probes, if it has any, check a port it serves health on.
  const Value& agent =
      FindBy(At(ds, "spec.template.spec.containers"), "name", "periphery");
  for (const char* probe :
       {"startupProbe", "livenessProbe", "readinessProbe"}) {
    const Value& p = Get(agent, probe);
    if (p.kind_case() == Value::KIND_NOT_SET) continue;
    const int agent_port = Int(At(p, "grpc.port"));
    ASSERT_TRUE(periphery.ports.count(agent_port))
        << probe << " checks port " << agent_port << ", not a container port";
    EXPECT_TRUE(Healthy(absl::StrCat("[::1]:", periphery.ports[agent_port])))
        << probe;
  }

  RunResult exec = ctl({"exec", "-n", kNodeName, "--", "echo", "deployed"});
  EXPECT_EQ(exec.exit_code, 0) << exec.out << exec.err;
  EXPECT_EQ(exec.out, "deployed\n");

  // A replaced pod on the same node (rollout, eviction) finds the state the
  // last one left on the node and is the same periphery again.
  EXPECT_EQ(periphery_daemon.Stop(), 0) << periphery_daemon.Log();
  Daemon replaced(periphery.argv, dir_.File("periphery-2.log"), periphery.env);
  replaced.Start();
  EXPECT_TRUE(WaitFor(
      [&] {
        if (!replaced.Running()) return true;
        exec = ctl({"exec", "-n", kNodeName, "--", "echo", "again"});
        return exec.exit_code == 0;
      },
      absl::Seconds(20)))
      << exec.out << exec.err;
  EXPECT_EQ(exec.out, "again\n") << exec.err << replaced.Log();

  // Both stop cleanly on SIGTERM, as the kubelet stops them.
  EXPECT_EQ(replaced.Stop(), 0) << replaced.Log();
  EXPECT_EQ(core_daemon.Stop(), 0) << core_daemon.Log();
}

// The remapping itself: ports and mount paths only, at word boundaries.
TEST(DeployRemapTest, RewritesPortsAndMountPathsOnly) {
  Remap remap("/t");
  remap.AddPort(7700, 40001);
  remap.AddPath("/var/lib/varan");
  remap.AddPath("/var/lib/varan/periphery");
  remap.AddPath("/tmp");
  EXPECT_EQ(remap.Apply("--listen=[::]:7700"), "--listen=[::]:40001");
  EXPECT_EQ(remap.Apply(":77001"), ":77001");
  EXPECT_EQ(remap.Apply("data-dir = \"/var/lib/varan/core\""),
            "data-dir = \"/t/var/lib/varan/core\"");
  EXPECT_EQ(remap.Apply("--state-dir=/var/lib/varan/periphery"),
            "--state-dir=/t/var/lib/varan/periphery");
  EXPECT_EQ(remap.Apply("/tmpfoo /tmp /x/tmp"), "/tmpfoo /t/tmp /x/tmp");
  EXPECT_EQ(remap.PathsOutsideVolumes(remap.Apply("a=/tmp/x b=/etc/y")),
            std::vector<std::string>{"/etc/y"});
  EXPECT_EQ(Expand("--name=$(NODE) $$(NODE) $(OTHER)", {{"NODE", "n1"}}),
            "--name=n1 $(NODE) $(OTHER)");
}

INSTANTIATE_TEST_SUITE_P(Kustomizations, DeploySmokeTest,
                         ::testing::Values(Kustomization{"base"},
                                           Kustomization{"overlays/dual-stack"},
                                           Kustomization{"overlays/ipv6-only"},
                                           Kustomization{"overlays/host"}));

}  // namespace
}  // namespace varan::testing
