ib_add_test(test_cli SOURCES ${CMAKE_CURRENT_LIST_DIR}/cli_test.cc)
# The tests run the inbetween executable.
add_dependencies(test_cli inbetween)
