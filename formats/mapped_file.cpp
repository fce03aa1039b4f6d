// mapped_file.cpp: open + fstat + mmap of a whole file, reader sources, text files (formats/mapped_file.h).
#include "formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace lb {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    LB_CHECK(fd >= 0, "%s: cannot open: %s", path.c_str(), std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path + ": not a regular file");
    }
    std::shared_ptr<MappedFile> f(new MappedFile());
    f->path_ = path;
    f->size_ = uint64_t(st.st_size);
    if (f->size_ > 0) {
        void* p = mmap(nullptr, size_t(f->size_), PROT_READ, MAP_PRIVATE, fd, 0);
        const int err = errno;
        ::close(fd);
        LB_CHECK(p != MAP_FAILED, "%s: cannot map: %s", path.c_str(), std::strerror(err));
        f->data_ = static_cast<const uint8_t*>(p);
    } else {
        ::close(fd);
    }
    return f;
}

MappedFile::~MappedFile() {
    if (data_) munmap(const_cast<uint8_t*>(data_), size_t(size_));
}

void MappedSource::attach(const std::string& path) {
    map_ = MappedFile::open(path);
    attach(map_->data(), map_->size(), path);
}

void MappedSource::attach(const void* data, uint64_t size, const std::string& origin) {
    base_ = static_cast<const uint8_t*>(data);
    size_ = size;
    origin_ = origin;
}

std::string read_text_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    LB_CHECK(f, "%s: cannot open: %s", path.c_str(), std::strerror(errno));
    std::ostringstream ss;
    ss << f.rdbuf();
    LB_CHECK(!f.bad(), "%s: read error", path.c_str());
    return ss.str();
}

}  // namespace lb
