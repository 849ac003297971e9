// Reading the files core's built-in CA writes, for the CA rotation tests.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "common/pki.h"

namespace varan::core::testing {

// The whole file at `path` ("" when it cannot be read).
inline std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The pin of the CA certificate at `cert_path` ("" when there is none).
inline std::string PinOf(const std::string& cert_path) {
  return pki::AuthorityPin(Slurp(cert_path)).value_or("");
}

}  // namespace varan::core::testing
