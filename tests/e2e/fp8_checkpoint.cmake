# fp8 checkpoints (float8 weights with their scales) read as their dequantisation, on the fixture model.
ib_add_test(test_e2e_fp8_checkpoint SOURCES ${CMAKE_CURRENT_LIST_DIR}/fp8_checkpoint_test.cc LABELS fixture)
