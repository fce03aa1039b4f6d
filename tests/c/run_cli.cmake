# run_cli.cmake: runs `lowbit run` for the C API test and saves its stdout (ctest cannot redirect):
#   cmake -DLOWBIT=... -DMODEL=... -DOUT=... [-DEMULATOR="qemu-aarch64 -L ..."] -P run_cli.cmake
separate_arguments(emu UNIX_COMMAND "${EMULATOR}")
execute_process(COMMAND ${emu} ${LOWBIT} run -m ${MODEL} -p "Once upon a time" --temp 0 -n 30 -t 1
  OUTPUT_FILE ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "lowbit run failed (${rc})")
endif()
