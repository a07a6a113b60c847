# Parsers under hostile input: bounded memory (counted allocations), size and depth limits, FIFOs.
ib_add_test(test_io_parse_limits SOURCES ${CMAKE_CURRENT_LIST_DIR}/parse_limits_test.cc)
