// torch_writer.h: test helpers that write torch.save files byte by byte: a protocol-2 pickle
// built opcode by opcode (Pickle) and a stored zip as torch writes it (Zip: entries under <root>/,
// 'FB' padding extras, data descriptors, optional ZIP64 records). Used by the container tests and
// by the converter's hostile-input tests. Include after doctest.
#pragma once
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

namespace lb_test {

using Bytes = std::vector<uint8_t>;

// a protocol-2 pickle written opcode by opcode

struct Pickle {
    Bytes b;
    Pickle() { op(0x80).u8(2); }  // PROTO 2
    Pickle& op(uint8_t o) {
        b.push_back(o);
        return *this;
    }
    Pickle& u8(uint8_t v) { return op(v); }
    Pickle& le(uint64_t v, int n) {
        for (int i = 0; i < n; i++) b.push_back(i < 8 ? uint8_t(v >> (8 * i)) : 0);
        return *this;
    }
    Pickle& raw(const std::string& s) {
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    Pickle& mark() { return op('('); }
    Pickle& str(const std::string& s) { return op('X').le(s.size(), 4).raw(s); }
    Pickle& integer(int64_t v) {  // the smallest form, as pickle chooses it
        if (v >= 0 && v < 256) return op('K').u8(uint8_t(v));
        if (v >= 0 && v < 65536) return op('M').le(uint64_t(v), 2);
        if (v >= INT32_MIN && v <= INT32_MAX) return op('J').le(uint64_t(uint32_t(int32_t(v))), 4);
        int n = 1;
        while (n < 8 && !(v >= -(int64_t(1) << (8 * n - 1)) && v < (int64_t(1) << (8 * n - 1)))) n++;
        return op(0x8a).u8(uint8_t(n)).le(uint64_t(v), n);
    }
    Pickle& real(double d) {  // BINFLOAT, big-endian
        uint64_t u;
        std::memcpy(&u, &d, 8);
        op('G');
        for (int i = 7; i >= 0; i--) b.push_back(uint8_t(u >> (8 * i)));
        return *this;
    }
    Pickle& global(const std::string& module, const std::string& name) {
        return op('c').raw(module + "\n" + name + "\n");
    }
    Pickle& put(uint32_t i) { return i < 256 ? op('q').u8(uint8_t(i)) : op('r').le(i, 4); }
    Pickle& get(uint32_t i) { return i < 256 ? op('h').u8(uint8_t(i)) : op('j').le(i, 4); }
    Pickle& tuple_of(std::initializer_list<int64_t> v) {
        if (v.size() == 0) return op(')');
        if (v.size() > 3) mark();
        for (int64_t x : v) integer(x);
        return v.size() <= 3 ? op(uint8_t(0x84 + v.size())) : op('t');
    }
    // torch's tensor: _rebuild_tensor_v2(storage pid, offset, size, stride, False, OrderedDict())
    Pickle& tensor(const std::string& storage_class, const std::string& key, int64_t numel, int64_t offset,
                   std::initializer_list<int64_t> size, std::initializer_list<int64_t> stride) {
        global("torch._utils", "_rebuild_tensor_v2").mark();
        mark().str("storage").global("torch", storage_class).str(key).str("cpu").integer(numel).op('t').op('Q');
        integer(offset).tuple_of(size).tuple_of(stride).op(0x89);
        global("collections", "OrderedDict").op(')').op('R');
        return op('t').op('R');
    }
    Bytes stop() {
        op('.');
        return b;
    }
};

// ---------------------------------------------------------------------------------------------
// a stored zip as torch writes it: entries under <root>/, 64-byte aligned data via an 'FB' extra,
// zero CRC/sizes in the local headers followed by data descriptors, optional ZIP64 end records

inline uint32_t crc32_of(const Bytes& d) {
    uint32_t c = 0xFFFFFFFFu;
    for (uint8_t x : d) {
        c ^= x;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

struct Zip {
    struct Item {
        std::string name;
        Bytes data;
        uint16_t method = 0;
        uint16_t flags = 0x0808;
    };
    std::vector<Item> items;
    bool zip64 = true;         // miniz (torch) always writes the ZIP64 end records
    bool zip64_extra = false;  // central entries give sizes and offset in a ZIP64 extra field

    Zip& add(const std::string& name, const Bytes& data) {
        items.push_back({name, data});
        return *this;
    }
    Zip& add(const std::string& name, const std::string& text) { return add(name, Bytes(text.begin(), text.end())); }

    static void le(Bytes& b, uint64_t v, int n) {
        for (int i = 0; i < n; i++) b.push_back(uint8_t(v >> (8 * i)));
    }
    Bytes build() const {
        Bytes out, cd;
        for (const Item& it : items) {
            const uint64_t local = out.size();
            // 'FB' extra pads the data start to a multiple of 64
            const uint64_t fixed = out.size() + 30 + it.name.size() + 4;
            const uint64_t pad = (64 - fixed % 64) % 64;
            le(out, 0x04034b50, 4);
            le(out, 20, 2);
            le(out, it.flags, 2);
            le(out, it.method, 2);
            le(out, 0, 4);  // time, date
            le(out, 0, 4);  // crc (in the data descriptor)
            le(out, 0, 4);
            le(out, 0, 4);
            le(out, it.name.size(), 2);
            le(out, 4 + pad, 2);
            out.insert(out.end(), it.name.begin(), it.name.end());
            le(out, 0x4246, 2);
            le(out, pad, 2);
            out.insert(out.end(), size_t(pad), 'Z');
            REQUIRE(out.size() % 64 == 0);
            out.insert(out.end(), it.data.begin(), it.data.end());
            const uint32_t crc = crc32_of(it.data);
            le(out, 0x08074b50, 4);  // data descriptor
            le(out, crc, 4);
            le(out, it.data.size(), 4);
            le(out, it.data.size(), 4);
            le(cd, 0x02014b50, 4);
            le(cd, 20, 2);
            le(cd, 20, 2);
            le(cd, it.flags, 2);
            le(cd, it.method, 2);
            le(cd, 0, 4);
            le(cd, crc, 4);
            const uint64_t all_ones = 0xFFFFFFFF;
            le(cd, zip64_extra ? all_ones : it.data.size(), 4);
            le(cd, zip64_extra ? all_ones : it.data.size(), 4);
            le(cd, it.name.size(), 2);
            le(cd, zip64_extra ? 4 + 24 + 4 : 0, 2);  // extra: an unknown field, then ZIP64 (usize, csize, offset)
            le(cd, 0, 2);                             // comment
            le(cd, 0, 2);                             // disk
            le(cd, 0, 2);
            le(cd, 0, 4);
            le(cd, zip64_extra ? all_ones : local, 4);
            cd.insert(cd.end(), it.name.begin(), it.name.end());
            if (zip64_extra) {
                le(cd, 0x7075, 2);  // some other extra field, skipped
                le(cd, 0, 2);
                le(cd, 0x0001, 2);
                le(cd, 24, 2);
                le(cd, it.data.size(), 8);
                le(cd, it.data.size(), 8);
                le(cd, local, 8);
            }
        }
        const uint64_t cd_off = out.size();
        out.insert(out.end(), cd.begin(), cd.end());
        if (zip64) {
            const uint64_t e64 = out.size();
            le(out, 0x06064b50, 4);
            le(out, 44, 8);
            le(out, 45, 2);
            le(out, 45, 2);
            le(out, 0, 4);
            le(out, 0, 4);
            le(out, items.size(), 8);
            le(out, items.size(), 8);
            le(out, cd.size(), 8);
            le(out, cd_off, 8);
            le(out, 0x07064b50, 4);
            le(out, 0, 4);
            le(out, e64, 8);
            le(out, 1, 4);
        }
        le(out, 0x06054b50, 4);
        le(out, 0, 4);
        le(out, items.size(), 2);
        le(out, items.size(), 2);
        le(out, cd.size(), 4);
        le(out, zip64 ? 0xFFFFFFFF : cd_off, 4);
        le(out, 0, 2);
        return out;
    }
};

}  // namespace lb_test
