# Run by `cmake --install` (see cmake/Install.cmake, which sets the VARAN_*
# variables): the systemd units with ExecStart at the installed binaries, the
# example configuration unless one is there, and the state directory.

function(varan_stage out path)
  # DESTDIR applies to absolute destinations too.
  set(${out} "$ENV{DESTDIR}${path}" PARENT_SCOPE)
endfunction()

function(varan_absolute out path)
  if(IS_ABSOLUTE "${path}")
    set(${out} "${path}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${path}" PARENT_SCOPE)
  endif()
endfunction()

varan_absolute(bindir "${VARAN_BINDIR}")
varan_absolute(unitdir "${VARAN_INSTALL_UNITDIR}")
varan_absolute(datadir "${VARAN_DATADIR}")

# Units: the files in deploy/systemd/ name /usr/local/bin and /etc/varan.
foreach(unit varan-core.service varan-periphery.service)
  file(READ "${VARAN_SOURCE_DIR}/deploy/systemd/${unit}" text)
  string(REPLACE "/usr/local/bin/" "${bindir}/" text "${text}")
  string(REPLACE "/etc/varan/" "${VARAN_INSTALL_CONFDIR}/" text "${text}")
  varan_stage(dest "${unitdir}/${unit}")
  message(STATUS "Installing: ${dest}")
  file(WRITE "${dest}" "${text}")
endforeach()
# (file(INSTALL) adds DESTDIR itself.)
file(INSTALL "${VARAN_SOURCE_DIR}/deploy/systemd/varan-periphery-restricted.conf"
     DESTINATION "${datadir}/varan/systemd")

# Example configuration: installed only where none exists yet.
varan_stage(confdir "${VARAN_INSTALL_CONFDIR}")
foreach(config core.toml periphery.toml)
  if(EXISTS "${confdir}/${config}")
    message(STATUS "Keeping existing: ${confdir}/${config}")
  else()
    file(INSTALL "${VARAN_SOURCE_DIR}/deploy/config/${config}"
         DESTINATION "${VARAN_INSTALL_CONFDIR}")
  endif()
endforeach()

varan_stage(statedir "${VARAN_INSTALL_STATEDIR}")
message(STATUS "Installing: ${statedir}")
file(MAKE_DIRECTORY "${statedir}")
