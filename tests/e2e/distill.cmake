# The distilled fast path (LoRAs, Euler with explicit timesteps, guidance 1) end to end; the CLI
# test runs the inbetween executable.
ib_add_test(test_e2e_distill SOURCES ${CMAKE_CURRENT_LIST_DIR}/distill_test.cc LABELS fixture)
add_dependencies(test_e2e_distill inbetween)
