# varan_set_warnings(target): the warning set for project code, as INTERFACE
# flags so every target that links `target` compiles with them.
function(varan_set_warnings target)
  target_compile_options(${target} INTERFACE
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
    -Woverloaded-virtual -Wimplicit-fallthrough
    -Wformat=2 -Wmisleading-indentation -Wduplicated-cond -Wlogical-op
    # Every enumerator needs its case, even with a default: a new enumerator
    # is then a compile error wherever it must be handled. protoc 3.21 adds
    # <Enum>_INT_MIN/MAX_SENTINEL_DO_NOT_USE_ to proto3 enums and GCC asks
    # for them too: list them with the values handled after the switch.
    # Generated code and third-party headers are SYSTEM includes, not held
    # to this.
    -Wswitch-enum)
  if(VARAN_WERROR)
    target_compile_options(${target} INTERFACE -Werror)
  endif()
endfunction()
