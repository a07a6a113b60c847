ib_add_test(test_text_clean SOURCES ${CMAKE_CURRENT_LIST_DIR}/clean_test.cc)
ib_add_test(test_text_tokenizer SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_test.cc LABELS fixture)
ib_add_test(test_text_tokenizer_errors SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_errors_test.cc)
