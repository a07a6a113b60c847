# Keyframe stories (include/inbetween/story.h, `inbetween story`) on the fixture model.
ib_add_test(test_story SOURCES ${CMAKE_CURRENT_LIST_DIR}/story_test.cc LABELS fixture)
add_dependencies(test_story inbetween)
