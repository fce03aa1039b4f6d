// error.h: the one error type of the engine. Every failure that user input can cause throws
// lb::Error with a message that names the bad field, what was found and what is supported.
// The C API (include/lowbit.h) converts it into an lb_status at the boundary.
#pragma once
#include <cstdarg>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace lb {

class Error : public std::runtime_error {
 public:
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// printf-style message builder for errors
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
inline std::string
strfmt(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

#define LB_CHECK(cond, ...)                                        \
    do {                                                           \
        if (!(cond)) throw ::lb::Error(::lb::strfmt(__VA_ARGS__)); \
    } while (0)

}  // namespace lb
