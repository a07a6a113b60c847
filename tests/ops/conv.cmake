ib_add_test(test_ops_conv SOURCES ${CMAKE_CURRENT_LIST_DIR}/conv_test.cc)
ib_add_test(test_ops_vae_ops SOURCES ${CMAKE_CURRENT_LIST_DIR}/vae_ops_test.cc)
