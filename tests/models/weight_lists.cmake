# Each model's weight list (src/models) against what its loader reads.
ib_add_test(test_models_weight_lists SOURCES ${CMAKE_CURRENT_LIST_DIR}/weight_lists_test.cc)
