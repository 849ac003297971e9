# varan_set_sanitizers(target): adds -fsanitize=${VARAN_SANITIZE} (e.g.
# "address,undefined" or "thread") to everything linking `target`.
#
# Debian's gcc links with --as-needed unless a -fsanitize flag is given
# (`gcc -dumpspecs`: %{!fsanitize=*:--as-needed}), so a sanitized binary
# would also need every library its dependencies' CMake targets name (zlib,
# c-ares, re2 under gRPC). -Wl,--as-needed keeps its DT_NEEDED list that of
# a release build plus the sanitizer runtimes, which gcc links with
# --no-as-needed on its own: tests/deploy/dockerfile.test.js compares that
# list with the runtime image's packages.
function(varan_set_sanitizers target)
  if(VARAN_SANITIZE)
    target_compile_options(${target} INTERFACE
      -fsanitize=${VARAN_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    target_link_options(${target} INTERFACE
      -fsanitize=${VARAN_SANITIZE} -Wl,--as-needed)
  endif()
endfunction()
