// UnitTempDir: a fresh directory under $TMPDIR (or /tmp), removed with its
// contents when the object goes away. Tests only.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace varan::testing {

class UnitTempDir {
 public:
  UnitTempDir() {
    const char* base = getenv("TMPDIR");
    std::string templ =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
        "/varan-unit-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) abort();
    path_ = templ;
  }
  ~UnitTempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  UnitTempDir(const UnitTempDir&) = delete;
  UnitTempDir& operator=(const UnitTempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace varan::testing
