# varan_set_warnings(target): the warning set for project code, as INTERFACE
# flags so every target that links `target` compiles with them.
function(varan_set_warnings target)
  target_compile_options(${target} INTERFACE
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
    -Woverloaded-virtual -Wimplicit-fallthrough
    -Wformat=2 -Wmisleading-indentation -Wduplicated-cond -Wlogical-op)
  if(VARAN_WERROR)
    target_compile_options(${target} INTERFACE -Werror)
  endif()
endfunction()
