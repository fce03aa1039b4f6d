// torch_zip.cpp: the zip layer of torch.save files and the glue to the unpickler
// (formats/torch_zip.h). Only what torch writes is accepted: one disk, stored (uncompressed)
// entries, sizes and offsets from the central directory (local headers carry zeros and a data
// descriptor follows each entry), ZIP64 end records. Every offset and size is checked against the
// file with overflow-safe arithmetic before it is used.
#include "formats/torch_zip.h"

#include <cstring>

#include "core/error.h"

namespace lb {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50, kEnd64LocatorSig = 0x07064b50;
constexpr uint64_t kEndSize = 22, kLocatorSize = 20, kEnd64MinSize = 56, kCentralSize = 46, kLocalSize = 30;

uint32_t crc32(const uint8_t* p, uint64_t n) {
    static uint32_t table[256];
    static const bool init = [] {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        return true;
    }();
    (void)init;
    uint32_t c = 0xFFFFFFFFu;
    for (uint64_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

// Little-endian field reads at absolute offsets, each checked against the file size.
class Bytes {
 public:
    Bytes(const uint8_t* base, uint64_t size, const std::string& origin) : base_(base), size_(size), origin_(origin) {}
    [[noreturn]] void fail(const std::string& what) const { throw Error(origin_ + ": torch zip: " + what); }
    // [off, off + n) must lie inside the file
    void need(uint64_t off, uint64_t n, const std::string& field) const {
        if (off > size_ || n > size_ - off)
            fail(field + ": " + std::to_string(n) + " bytes at offset " + std::to_string(off) +
                 " run past the end of the file (" + std::to_string(size_) + " bytes; truncated?)");
    }
    uint64_t u(uint64_t off, unsigned n, const std::string& field) const {
        need(off, n, field);
        uint64_t v = 0;
        for (unsigned i = 0; i < n; i++) v |= uint64_t(base_[off + i]) << (8 * i);
        return v;
    }

 private:
    const uint8_t* base_;
    uint64_t size_;
    const std::string& origin_;
};

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\0')) s.pop_back();
    size_t i = 0;
    while (i < s.size() && s[i] == ' ') i++;
    return s.substr(i);
}

}  // namespace

bool TorchFile::looks_like_zip(const uint8_t* data, size_t size) {
    return size >= 4 && data[0] == 'P' && data[1] == 'K' && data[2] == 3 && data[3] == 4;
}

std::unique_ptr<TorchFile> TorchFile::open(const std::string& path) {
    std::unique_ptr<TorchFile> f(new TorchFile());
    f->attach(path);
    f->parse();
    return f;
}

std::unique_ptr<TorchFile> TorchFile::from_memory(const void* data, size_t size, const std::string& origin,
                                                  bool check_crc) {
    std::unique_ptr<TorchFile> f(new TorchFile());
    f->check_crc_ = check_crc;
    f->attach(data, size, origin);
    f->parse();
    return f;
}

const ZipEntry* TorchFile::find_entry(const std::string& rel_name) const {
    auto it = by_name_.find(root_ + "/" + rel_name);
    return it == by_name_.end() ? nullptr : &entries_[it->second];
}

void TorchFile::read_zip() {
    const Bytes b(base_, size_, origin_);
    // end of central directory: 22 bytes + a comment of up to 65535 bytes, at the very end
    uint64_t end = UINT64_MAX;
    if (size_ >= kEndSize) {
        const uint64_t lowest = size_ - kEndSize > 65535 ? size_ - kEndSize - 65535 : 0;
        for (uint64_t p = size_ - kEndSize + 1; p-- > lowest;) {
            if (b.u(p, 4, "end record") == kEndSig && p + kEndSize + b.u(p + 20, 2, "comment length") == size_) {
                end = p;
                break;
            }
        }
    }
    if (end == UINT64_MAX) b.fail("no end-of-central-directory record (not a zip file, or truncated)");
    uint64_t disk = b.u(end + 4, 2, "disk number"), cd_disk = b.u(end + 6, 2, "central directory disk");
    uint64_t n_entries = b.u(end + 10, 2, "entry count");
    uint64_t cd_size = b.u(end + 12, 4, "central directory size");
    uint64_t cd_off = b.u(end + 16, 4, "central directory offset");
    uint64_t records_start = end;  // the central directory must end before the end records
    if (b.u(end + 8, 2, "entries on this disk") != n_entries) b.fail("multi-disk archives are not supported");
    // ZIP64: a locator right before the end record points at the ZIP64 end record
    if (end >= kLocatorSize && b.u(end - kLocatorSize, 4, "ZIP64 locator") == kEnd64LocatorSig) {
        const uint64_t loc = end - kLocatorSize;
        const uint64_t e64 = b.u(loc + 8, 8, "ZIP64 end record offset");
        if (b.u(loc + 16, 4, "ZIP64 disk count") > 1) b.fail("multi-disk archives are not supported");
        if (e64 > loc || loc - e64 < kEnd64MinSize)
            b.fail("ZIP64 end record offset " + std::to_string(e64) + " is not before its locator at " +
                   std::to_string(loc));
        if (b.u(e64, 4, "ZIP64 end record") != kEnd64Sig) b.fail("bad ZIP64 end record signature");
        disk = b.u(e64 + 16, 4, "ZIP64 disk number");
        cd_disk = b.u(e64 + 20, 4, "ZIP64 central directory disk");
        if (b.u(e64 + 24, 8, "ZIP64 entries on this disk") != b.u(e64 + 32, 8, "ZIP64 entry count"))
            b.fail("multi-disk archives are not supported");
        n_entries = b.u(e64 + 32, 8, "ZIP64 entry count");
        cd_size = b.u(e64 + 40, 8, "ZIP64 central directory size");
        cd_off = b.u(e64 + 48, 8, "ZIP64 central directory offset");
        records_start = e64;
    } else if (n_entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF) {
        b.fail("end record says ZIP64 but there is no ZIP64 locator");
    }
    if (disk != 0 || cd_disk != 0) b.fail("multi-disk archives are not supported");
    if (cd_off > records_start || cd_size > records_start - cd_off)
        b.fail("central directory (offset " + std::to_string(cd_off) + ", " + std::to_string(cd_size) +
               " bytes) is not inside the file before the end record at " + std::to_string(records_start));
    if (n_entries == 0) b.fail("the archive has no entries");
    if (n_entries > cd_size / kCentralSize)
        b.fail(std::to_string(n_entries) + " entries cannot fit in a central directory of " + std::to_string(cd_size) +
               " bytes");

    entries_.reserve(size_t(n_entries));
    uint64_t p = cd_off;
    const uint64_t cd_end = cd_off + cd_size;
    for (uint64_t i = 0; i < n_entries; i++) {
        const std::string f = "central directory entry #" + std::to_string(i);
        if (cd_end - p < kCentralSize) b.fail(f + ": runs past the end of the central directory");
        if (b.u(p, 4, f) != kCentralSig) b.fail(f + ": bad signature");
        const uint64_t flags = b.u(p + 8, 2, f), method = b.u(p + 10, 2, f);
        const uint32_t crc = uint32_t(b.u(p + 16, 4, f));
        uint64_t csize = b.u(p + 20, 4, f), usize = b.u(p + 24, 4, f);
        const uint64_t name_len = b.u(p + 28, 2, f), extra_len = b.u(p + 30, 2, f), comment_len = b.u(p + 32, 2, f);
        uint64_t entry_disk = b.u(p + 34, 2, f), local = b.u(p + 42, 4, f);
        const uint64_t var = name_len + extra_len + comment_len;
        if (cd_end - p - kCentralSize < var) b.fail(f + ": name/extra/comment run past the central directory");
        ZipEntry e;
        e.name.assign(reinterpret_cast<const char*>(base_ + p + kCentralSize), size_t(name_len));
        e.crc32 = crc;
        const std::string fe = "entry '" + e.name + "'";
        // ZIP64 extended information: the 8-byte values replace the 32-bit fields that are all ones
        for (uint64_t x = p + kCentralSize + name_len, xe = x + extra_len; x < xe;) {
            if (xe - x < 4) b.fail(fe + ": truncated extra field");
            const uint64_t id = b.u(x, 2, fe), len = b.u(x + 2, 2, fe);
            if (xe - x - 4 < len) b.fail(fe + ": extra field runs past its area");
            if (id == 0x0001) {
                uint64_t q = x + 4;
                const uint64_t qe = q + len;
                auto take = [&](uint64_t& field, unsigned n) {
                    if (qe - q < n) b.fail(fe + ": ZIP64 extra field too short");
                    field = b.u(q, n, fe);
                    q += n;
                };
                if (usize == 0xFFFFFFFF) take(usize, 8);
                if (csize == 0xFFFFFFFF) take(csize, 8);
                if (local == 0xFFFFFFFF) take(local, 8);
                if (entry_disk == 0xFFFF) take(entry_disk, 4);
            }
            x += 4 + len;
        }
        if (flags & 1) b.fail(fe + ": encrypted entries are not supported");
        if (method != 0)
            b.fail(fe + ": compressed with method " + std::to_string(method) +
                   "; torch.save writes stored (uncompressed) entries only");
        if (csize != usize)
            b.fail(fe + ": stored entry with compressed size " + std::to_string(csize) + " != size " +
                   std::to_string(usize));
        if (entry_disk != 0) b.fail(fe + ": multi-disk archives are not supported");
        // local header: its name and extra lengths place the data (sizes come from here, not from it)
        if (local > cd_off || cd_off - local < kLocalSize)
            b.fail(fe + ": local header offset " + std::to_string(local) + " is not before the central directory");
        if (b.u(local, 4, fe) != kLocalSig) b.fail(fe + ": bad local header signature");
        const uint64_t lname = b.u(local + 26, 2, fe), lextra = b.u(local + 28, 2, fe);
        const uint64_t data = local + kLocalSize + lname + lextra;  // no overflow: each term is small
        if (data > cd_off || usize > cd_off - data)
            b.fail(fe + ": " + std::to_string(usize) + " bytes at offset " + std::to_string(data) +
                   " run into the central directory at " + std::to_string(cd_off));
        if (lname != name_len || std::memcmp(base_ + local + kLocalSize, e.name.data(), size_t(name_len)) != 0)
            b.fail(fe + ": the local header names a different entry");
        e.offset = data;
        e.size = usize;
        if (!by_name_.emplace(e.name, entries_.size()).second) b.fail(fe + " appears twice");
        entries_.push_back(std::move(e));
        p += kCentralSize + var;
    }
}

void TorchFile::parse() {
    const Bytes b(base_, size_, origin_);
    // torch < 1.6 wrote a pickle (magic number first) or, earlier still, a tar archive
    const bool pickle_start = size_ >= 2 && base_[0] == 0x80 && base_[1] >= 2 && base_[1] <= 5;
    const bool tar = size_ >= 262 && std::memcmp(base_ + 257, "ustar", 5) == 0;
    if (pickle_start || tar)
        throw Error(origin_ + ": legacy (pre-1.6) torch.save format is not supported; re-save with torch >= 1.6");
    if (!looks_like_zip(base_, size_)) b.fail("not a torch.save file (no zip signature 'PK\\x03\\x04' at the start)");
    read_zip();

    const std::string& first = entries_[0].name;
    const size_t slash = first.find('/');
    if (slash == std::string::npos || slash == 0)
        b.fail("first entry '" + first + "' is not inside a root folder (expected '<root>/data.pkl')");
    root_ = first.substr(0, slash);

    auto small_record = [&](const ZipEntry& e) {
        if (e.size > 4096)
            b.fail("entry '" + e.name + "' is " + std::to_string(e.size) + " bytes, expected a short text");
        if (crc32(base_ + e.offset, e.size) != e.crc32)
            b.fail("entry '" + e.name + "': CRC-32 mismatch (corrupt file)");
        return trim(std::string(reinterpret_cast<const char*>(base_ + e.offset), size_t(e.size)));
    };
    const ZipEntry* ver = find_entry(".data/version");
    if (!ver) ver = find_entry("version");
    if (!ver) b.fail("no '" + root_ + "/version' record");
    const std::string vs = small_record(*ver);
    if (vs.empty() || vs.size() > 4 || vs.find_first_not_of("0123456789") != std::string::npos)
        b.fail("'" + ver->name + "' holds '" + vs + "', expected a version number");
    version_ = std::stoi(vs);
    if (version_ < 1 || version_ > 10)
        b.fail("'" + ver->name + "': file format version " + vs + " is not supported (1..10)");
    if (const ZipEntry* bo = find_entry("byteorder")) {
        const std::string order = small_record(*bo);
        if (order != "little")
            b.fail("byteorder '" + order +
                   "': only little-endian files are supported (re-save on a little-endian machine)");
    }

    const ZipEntry* pkl = find_entry("data.pkl");
    if (!pkl) b.fail("no '" + root_ + "/data.pkl' entry");
    if (check_crc_ && crc32(base_ + pkl->offset, pkl->size) != pkl->crc32)
        b.fail("entry '" + pkl->name + "': CRC-32 mismatch (corrupt file)");

    std::shared_ptr<const void> keep = map_;
    const StorageResolver resolve = [&](const std::string& key, uint64_t nbytes) {
        const ZipEntry* e = find_entry("data/" + key);
        if (!e) b.fail("storage '" + key + "': zip entry '" + root_ + "/data/" + key + "' is missing");
        if (e->size < nbytes)
            b.fail("storage '" + key + "': entry '" + e->name + "' holds " + std::to_string(e->size) +
                   " bytes, its persistent id needs " + std::to_string(nbytes));
        return StorageBytes{base_ + e->offset, keep};
    };
    UnpickleLimits lim;
    // copies of non-contiguous views: at most twice the file, plus some room for tiny files
    lim.max_materialized = 2 * size_ + (uint64_t(16) << 20);
    root_obj_ = unpickle(base_ + pkl->offset, size_t(pkl->size), origin_ + ": " + pkl->name, resolve, lim);
}

}  // namespace lb
