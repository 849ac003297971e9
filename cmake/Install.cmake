# What `cmake --install` lays out besides the binaries (each binary's own
# install() puts it in <prefix>/bin):
#   <prefix>/lib/systemd/system/varan-core.service, varan-periphery.service
#       (deploy/systemd/, ExecStart pointing at <prefix>/bin)
#   <prefix>/share/varan/systemd/varan-periphery-restricted.conf (a drop-in)
#   /etc/varan/core.toml, periphery.toml (deploy/config/; an existing file is
#       kept, never overwritten)
#   /var/lib/varan/ (state; the units' StateDirectory= makes core/ and
#       periphery/ in it)
# The /etc and /var locations are absolute whatever the prefix, as the units
# and example configs name them; DESTDIR stages them like everything else:
#   DESTDIR=/tmp/stage cmake --install build
include(GNUInstallDirs)
set(VARAN_INSTALL_CONFDIR "/etc/varan" CACHE PATH
    "Where cmake --install puts the example configuration")
set(VARAN_INSTALL_STATEDIR "/var/lib/varan" CACHE PATH
    "The state directory cmake --install creates")
set(VARAN_INSTALL_UNITDIR "lib/systemd/system" CACHE PATH
    "Where cmake --install puts the systemd units (relative: under the prefix)")

# The prefix may change at install time (cmake --install --prefix), so the
# units are written then, by cmake/InstallFiles.cmake.
install(CODE "
  set(VARAN_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(VARAN_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(VARAN_DATADIR \"${CMAKE_INSTALL_DATADIR}\")
  set(VARAN_INSTALL_CONFDIR \"${VARAN_INSTALL_CONFDIR}\")
  set(VARAN_INSTALL_STATEDIR \"${VARAN_INSTALL_STATEDIR}\")
  set(VARAN_INSTALL_UNITDIR \"${VARAN_INSTALL_UNITDIR}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/InstallFiles.cmake\")
")
