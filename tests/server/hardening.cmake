# `inbetween serve` against hostile clients: foreign Host and Origin, slow clients, event streams,
# Range abuse, disk use, image decoding, temporary files, error bodies (issue 12, section 4).
ib_add_test(test_server_hardening SOURCES ${CMAKE_CURRENT_LIST_DIR}/hardening_test.cc LABELS fixture)
target_link_libraries(test_server_hardening PRIVATE PkgConfig::HTTPLIB)
add_dependencies(test_server_hardening inbetween)
