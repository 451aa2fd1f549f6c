// Strict recursive-descent JSON reader (RFC 8259) for untrusted safetensors headers.
#include "dynin_rt/json.h"

#include <cerrno>
#include <cstdlib>
#include <set>

#include "dynin_rt/common.h"

namespace dynin_rt {

const JsonValue* JsonValue::find(const std::string& key) const {
    for (const auto& kv : object)
        if (kv.first == key) return &kv.second;
    return nullptr;
}

namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
    Parser(const char* data, size_t size, const std::string& what) : p_(data), end_(data + size), what_(what) {}

    JsonValue document() {
        JsonValue v = value(0);
        skip_ws();
        if (p_ != end_) fail("trailing characters after the JSON value");
        return v;
    }

 private:
    const char* p_;
    const char* end_;
    const std::string& what_;

    [[noreturn]] void fail(const std::string& msg) const {
        throw FormatError(str_cat(what_, ": malformed JSON: ", msg));
    }

    void skip_ws() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
    }

    bool consume(const char* literal) {
        const char* q = p_;
        for (const char* l = literal; *l; ++l, ++q)
            if (q >= end_ || *q != *l) return false;
        p_ = q;
        return true;
    }

    JsonValue value(int depth) {
        if (depth > kMaxDepth) fail("nesting too deep");
        skip_ws();
        if (p_ >= end_) fail("unexpected end of input");
        JsonValue v;
        switch (*p_) {
            case '{': object(v, depth); break;
            case '[': array(v, depth); break;
            case '"': v.kind = JsonValue::Kind::String; v.string = string(); break;
            case 't': if (!consume("true")) fail("bad literal"); v.kind = JsonValue::Kind::Bool; v.boolean = true; break;
            case 'f': if (!consume("false")) fail("bad literal"); v.kind = JsonValue::Kind::Bool; break;
            case 'n': if (!consume("null")) fail("bad literal"); break;
            default: number(v);
        }
        return v;
    }

    void object(JsonValue& v, int depth) {
        v.kind = JsonValue::Kind::Object;
        ++p_;
        skip_ws();
        if (p_ < end_ && *p_ == '}') { ++p_; return; }
        std::set<std::string> seen;
        while (true) {
            skip_ws();
            if (p_ >= end_ || *p_ != '"') fail("expected a string key");
            std::string key = string();
            if (!seen.insert(key).second) fail(str_cat("duplicate key \"", key, "\""));
            skip_ws();
            if (p_ >= end_ || *p_ != ':') fail("expected ':'");
            ++p_;
            v.object.emplace_back(std::move(key), value(depth + 1));
            skip_ws();
            if (p_ < end_ && *p_ == ',') { ++p_; continue; }
            if (p_ < end_ && *p_ == '}') { ++p_; return; }
            fail("expected ',' or '}'");
        }
    }

    void array(JsonValue& v, int depth) {
        v.kind = JsonValue::Kind::Array;
        ++p_;
        skip_ws();
        if (p_ < end_ && *p_ == ']') { ++p_; return; }
        while (true) {
            v.array.push_back(value(depth + 1));
            skip_ws();
            if (p_ < end_ && *p_ == ',') { ++p_; continue; }
            if (p_ < end_ && *p_ == ']') { ++p_; return; }
            fail("expected ',' or ']'");
        }
    }

    static void put_utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    // Copies one well-formed multi-byte UTF-8 sequence (no overlongs, surrogates or > U+10FFFF).
    void utf8_sequence(std::string& out) {
        const auto b0 = static_cast<unsigned char>(*p_);
        int len;
        uint32_t cp;
        if (b0 >= 0xC2 && b0 <= 0xDF) { len = 2; cp = b0 & 0x1F; }
        else if (b0 >= 0xE0 && b0 <= 0xEF) { len = 3; cp = b0 & 0x0F; }
        else if (b0 >= 0xF0 && b0 <= 0xF4) { len = 4; cp = b0 & 0x07; }
        else fail("invalid UTF-8 in string");
        if (end_ - p_ < len) fail("truncated UTF-8 sequence");
        for (int i = 1; i < len; ++i) {
            const auto b = static_cast<unsigned char>(p_[i]);
            if ((b & 0xC0) != 0x80) fail("invalid UTF-8 in string");
            cp = (cp << 6) | (b & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            fail("invalid UTF-8 in string");
        out.append(p_, len);
        p_ += len;
    }

    uint32_t hex4() {
        if (end_ - p_ < 4) fail("truncated \\u escape");
        uint32_t cp = 0;
        for (int i = 0; i < 4; ++i, ++p_) {
            const char c = *p_;
            cp <<= 4;
            if (c >= '0' && c <= '9') cp |= c - '0';
            else if (c >= 'a' && c <= 'f') cp |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') cp |= c - 'A' + 10;
            else fail("bad \\u escape");
        }
        return cp;
    }

    std::string string() {
        ++p_;  // opening quote
        std::string out;
        while (true) {
            if (p_ >= end_) fail("unterminated string");
            const char c = *p_++;
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (static_cast<unsigned char>(c) >= 0x80) {
                --p_;
                utf8_sequence(out);
                continue;
            }
            if (c != '\\') { out += c; continue; }
            if (p_ >= end_) fail("unterminated escape");
            const char e = *p_++;
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00) {  // surrogate pair
                        if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail("lone surrogate");
                        p_ += 2;
                        const uint32_t lo = hex4();
                        if (lo < 0xDC00 || lo > 0xDFFF) fail("bad surrogate pair");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        fail("lone surrogate");
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }

    void number(JsonValue& v) {
        const char* start = p_;
        if (p_ < end_ && *p_ == '-') ++p_;
        if (p_ >= end_ || *p_ < '0' || *p_ > '9') fail("unexpected character");
        if (*p_ == '0') ++p_;
        else while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        bool integer = true;
        if (p_ < end_ && *p_ == '.') {
            integer = false;
            ++p_;
            if (p_ >= end_ || *p_ < '0' || *p_ > '9') fail("bad fraction");
            while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        }
        if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
            integer = false;
            ++p_;
            if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
            if (p_ >= end_ || *p_ < '0' || *p_ > '9') fail("bad exponent");
            while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        }
        const std::string text(start, p_);
        v.kind = JsonValue::Kind::Number;
        v.number = std::strtod(text.c_str(), nullptr);
        if (integer) {
            errno = 0;
            const long long n = std::strtoll(text.c_str(), nullptr, 10);
            if (errno == 0) {
                v.is_integer = true;
                v.integer = n;
            }
        }
    }
};

}  // namespace

JsonValue json_parse(const char* data, size_t size, const std::string& what) {
    return Parser(data, size, what).document();
}

}  // namespace dynin_rt
