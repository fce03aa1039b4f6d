// args.h: number parsing for the subcommands' options: the whole string must be a number in
// range, or lb::Error names the option and what was given.
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace lb {

inline int64_t parse_int(const std::string& s, const char* what, int64_t lo, int64_t hi) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    LB_CHECK(!s.empty() && *end == 0 && errno == 0 && v >= lo && v <= hi, "%s: '%s' is not an integer in %lld..%lld",
             what, s.c_str(), (long long)lo, (long long)hi);
    return v;
}

inline float parse_float(const std::string& s, const char* what) {
    char* end = nullptr;
    errno = 0;
    const float v = std::strtof(s.c_str(), &end);
    LB_CHECK(!s.empty() && *end == 0 && errno == 0 && std::isfinite(v), "%s: '%s' is not a number", what, s.c_str());
    return v;
}

}  // namespace lb
