ib_add_test(test_io_image SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_test.cc)
# The tests build JPEG and WebP inputs with the encoders of the same libraries.
target_link_libraries(test_io_image PRIVATE JPEG::JPEG PkgConfig::WEBP)
