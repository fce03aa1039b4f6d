// doctest_main.cpp: the shared main() of all doctest executables.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
