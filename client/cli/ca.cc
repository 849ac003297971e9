// varanctl ca status | ca rotate start|switch|finish|abort: core's built-in
// cluster CA and its rotation (Admin.GetClusterCa, Admin.RotateClusterCa);
// varanctl ca init DIR: a cluster CA made ahead of time, offline, for core's
// --ca-from (so its pin is known before core starts).
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/cli/cli.h"
#include "common/pki.h"

namespace varan::cli {
namespace {

std::string PhaseText(varan::v1::CaRotationPhase p) {
  switch (p) {
    case varan::v1::CA_ROTATION_PHASE_STEADY:
      return "steady";
    case varan::v1::CA_ROTATION_PHASE_STARTED:
      return "started";
    case varan::v1::CA_ROTATION_PHASE_SWITCHED:
      return "switched";
    case varan::v1::CA_ROTATION_PHASE_UNSPECIFIED:
    case varan::v1::CaRotationPhase_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::CaRotationPhase_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  return "unknown";
}

// The state, and what the operator does next.
void Print(const varan::v1::ClusterCa& ca) {
  std::cout << "pin:      " << ca.pin() << "\n"
            << "rotation: " << PhaseText(ca.phase()) << "\n";
  const std::string both = absl::StrJoin(ca.trusted_pins(), ",");
  switch (ca.phase()) {
    case varan::v1::CA_ROTATION_PHASE_STARTED:
      std::cout << "new CA:   " << ca.other_pin() << "\n";
      if (ca.pending() > 0) {
        std::cout << "waiting for " << ca.pending()
                  << " peripheries to trust the new CA: "
                  << absl::StrJoin(ca.pending_names(), ", ")
                  << (ca.pending() >
                              static_cast<uint32_t>(ca.pending_names_size())
                          ? ", ..."
                          : "")
                  << "\n";
      } else {
        std::cout << "every periphery trusts the new CA\n";
      }
      std::cout << "next: give clients --ca-hash " << both
                << ", then: varanctl ca rotate switch\n";
      break;
    case varan::v1::CA_ROTATION_PHASE_SWITCHED:
      std::cout << "old CA:   " << ca.other_pin() << " (still trusted)\n"
                << "next: once peripheries renewed their certificates "
                   "(within a heartbeat), varanctl ca rotate finish; "
                   "clients then need only --ca-hash "
                << ca.pin() << "\n";
      break;
    case varan::v1::CA_ROTATION_PHASE_STEADY:
    case varan::v1::CA_ROTATION_PHASE_UNSPECIFIED:
    case varan::v1::CaRotationPhase_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::CaRotationPhase_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
}

struct Options {
  std::string step;
  bool force = false;
  std::string output;
};

int Run(const GlobalOptions& global, const Options& opts) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<varan::v1::ClusterCa> ca;
  if (opts.step.empty()) {
    ca = (*client)->GetClusterCa();
  } else {
    varan::v1::CaRotationStep step = varan::v1::CA_ROTATION_STEP_UNSPECIFIED;
    if (opts.step == "start") step = varan::v1::CA_ROTATION_STEP_START;
    if (opts.step == "switch") step = varan::v1::CA_ROTATION_STEP_SWITCH;
    if (opts.step == "finish") step = varan::v1::CA_ROTATION_STEP_FINISH;
    if (opts.step == "abort") step = varan::v1::CA_ROTATION_STEP_ABORT;
    ca = (*client)->RotateClusterCa(step, opts.force);
  }
  if (!ca.ok()) return Fail(ca.status());
  if (PrintStructured(*ca, opts.output)) return 0;
  Print(*ca);
  return 0;
}

// ca init: makes the CA in `dir` (or reads the one there) and prints its
// pin.
int Init(const std::string& dir, bool pin_only) {
  auto stored = pki::LoadOrCreateAuthority(
      dir, pki::kClusterCaName, absl::Now(), pki::kClusterCaValidity);
  if (!stored.ok()) return Fail(stored.status());
  auto pin = pki::AuthorityPin(stored->authority.cert_pem);
  if (!pin.ok()) return Fail(pin.status());
  if (pin_only) {
    std::cout << *pin << "\n";
    return 0;
  }
  std::cout << (stored->created ? "created a cluster CA in "
                                : "a cluster CA is already in ")
            << dir << " (ca.crt, and ca.key: keep it secret)\n"
            << "pin:  " << *pin << "\n"
            << "next: start core with --ca-from " << dir
            << " (in Kubernetes: the Secret varan-ca), and give peripheries "
               "join tokens ending with ."
            << *pin << "\n";
  return 0;
}

}  // namespace

void SetupCa(CLI::App& app, GlobalOptions* global, int* exit_code) {
  CLI::App* cmd =
      app.add_subcommand("ca",
                         "Core's built-in cluster CA: making it ahead of "
                         "time (offline), its pin, and rotating it (status "
                         "and rotate need an admin token)")
          ->require_subcommand(1);
  auto init_dir = std::make_shared<std::string>();
  auto pin_only = std::make_shared<bool>(false);
  CLI::App* init = cmd->add_subcommand(
      "init",
      "Make a cluster CA in DIR, offline, for core's --ca-from, and print "
      "its pin (or print the pin of the one DIR holds)");
  init->add_option("dir", *init_dir,
                   "where to write ca.crt and ca.key (created 0700)")
      ->required();
  init->add_flag("--pin-only", *pin_only, "print the pin alone");
  init->footer(
      "Example (Kubernetes):\n"
      "  PIN=$(varanctl ca init pki --pin-only)\n"
      "  kubectl -n varan create secret generic varan-ca "
      "--from-file=pki/ca.crt --from-file=pki/ca.key\n"
      "  kubectl -n varan create secret generic varan-join-token "
      "--from-literal=token=\"$(cat join.token).$PIN\"");
  init->callback([init_dir, pin_only, exit_code] {
    *exit_code = Init(*init_dir, *pin_only);
  });
  auto status_opts = std::make_shared<Options>();
  CLI::App* status =
      cmd->add_subcommand("status", "The CA's pin and where a rotation stands");
  status->add_option("-o,--output", status_opts->output, kOutputHelp)
      ->check(OutputFormat());
  status->callback([global, status_opts, exit_code] {
    *exit_code = Run(*global, *status_opts);
  });
  auto opts = std::make_shared<Options>();
  CLI::App* rotate =
      cmd->add_subcommand("rotate", "Move the rotation of the CA one step");
  rotate
      ->add_option("step", opts->step,
                   "start (a new CA, trusted beside the current one), switch "
                   "(core serves and issues with the new CA), finish (the "
                   "old CA is forgotten) or abort (the new CA is forgotten)")
      ->required()
      ->check(CLI::IsMember({"start", "switch", "finish", "abort"}));
  rotate->add_flag("--force", opts->force,
                   "switch even though some peripheries have not said they "
                   "trust the new CA (they then need its pin by hand)");
  rotate->add_option("-o,--output", opts->output, kOutputHelp)
      ->check(OutputFormat());
  rotate->footer(
      "Peripheries learn the new CA's pin with their next heartbeat after "
      "start, and renew their certificates after switch; clients pinning "
      "the CA take both pins in between (--ca-hash OLD,NEW).\n\nExample:\n"
      "  varanctl ca rotate start && varanctl ca status\n"
      "  varanctl ca rotate switch && varanctl ca rotate finish");
  rotate->callback(
      [global, opts, exit_code] { *exit_code = Run(*global, *opts); });
}

}  // namespace varan::cli
