ib_add_test(test_e2e SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e_test.cc LABELS fixture)
# The CLI tests run the inbetween executable.
add_dependencies(test_e2e inbetween)

if(INBETWEEN_CUDA)
  ib_add_test(test_e2e_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e_gpu_test.cc LABELS gpu)
endif()
