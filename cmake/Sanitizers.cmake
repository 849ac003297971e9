# varan_set_sanitizers(target): adds -fsanitize=${VARAN_SANITIZE} (e.g.
# "address,undefined" or "thread") to everything linking `target`.
function(varan_set_sanitizers target)
  if(VARAN_SANITIZE)
    target_compile_options(${target} INTERFACE
      -fsanitize=${VARAN_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    target_link_options(${target} INTERFACE -fsanitize=${VARAN_SANITIZE})
  endif()
endfunction()
