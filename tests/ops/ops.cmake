foreach(_op norm activation elementwise attention embedding)
  ib_add_test(test_ops_${_op} SOURCES ${CMAKE_CURRENT_LIST_DIR}/${_op}_test.cc)
endforeach()
