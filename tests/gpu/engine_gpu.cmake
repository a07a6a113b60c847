# The GPU engine (src/gpu/): its fused kernels against compositions of CPU reference ops, and its
# DiT against the upstream oracle (label gpu: run on the lent GPU machine).
if(INBETWEEN_CUDA)
  ib_add_test(test_kernels_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/kernels_gpu_test.cc LABELS gpu)
  target_link_libraries(test_kernels_gpu PRIVATE ib_gpu)
  ib_add_test(test_dit_runner_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/dit_runner_gpu_test.cc LABELS gpu)
  target_link_libraries(test_dit_runner_gpu PRIVATE ib_gpu)
endif()

# Runs everywhere (label fixture): without a GPU, --device cuda and bench fail fast and say why.
ib_add_test(test_gpu_absent SOURCES ${CMAKE_CURRENT_LIST_DIR}/no_gpu_test.cc LABELS fixture)
add_dependencies(test_gpu_absent inbetween)
