// chat.cpp: the chat template families of models/chat.h.
#include "models/chat.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"

namespace lb {
namespace {

std::string strip(const std::string& s) {
    const char* ws = " \t\n\r\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string::npos) return std::string();
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

void check_role(const ChatMessage& m) {
    LB_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant",
             "chat message role '%s': supported system, user, assistant", m.role.c_str());
}

// llama2: messages [first, end) with `sys` going into the first user turn
std::string render_llama2(const std::vector<ChatMessage>& msgs, size_t first, bool allow_system, const std::string& bos,
                          const std::string& eos) {
    std::string out, sys;
    bool have_sys = false;
    for (size_t i = first; i < msgs.size(); ++i) {
        const ChatMessage& m = msgs[i];
        check_role(m);
        if (m.role == "system") {
            LB_CHECK(allow_system && i == first,
                     "chat template llama2: a system message must be the first message of the conversation");
            sys = strip(m.content);
            have_sys = true;
        } else if (m.role == "user") {
            out += bos + "[INST] ";
            if (have_sys) out += "<<SYS>>\n" + sys + "\n<</SYS>>\n\n";
            have_sys = false;
            out += strip(m.content) + " [/INST]";
        } else {
            out += " " + strip(m.content) + " " + eos;
        }
    }
    LB_CHECK(!have_sys, "chat template llama2: a system message must be followed by a user message");
    return out;
}

std::string render_chatml(const std::vector<ChatMessage>& msgs) {
    std::string out;
    for (const ChatMessage& m : msgs) {
        check_role(m);
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    }
    return out;
}

std::string render_llama3(const std::vector<ChatMessage>& msgs) {
    std::string out;
    for (const ChatMessage& m : msgs) {
        check_role(m);
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) + "<|eot_id|>";
    }
    return out;
}

const char* const kLlama3Prompt = "<|start_header_id|>assistant<|end_header_id|>\n\n";

}  // namespace

const char* chat_template_name(ChatTemplate t) {
    return t == ChatTemplate::llama2 ? "llama2" : t == ChatTemplate::llama3 ? "llama3" : "chatml";
}

ChatTemplate chat_template_from_name(const std::string& name) {
    if (name == "llama2" || name == "llama-2") return ChatTemplate::llama2;
    if (name == "chatml") return ChatTemplate::chatml;
    if (name == "llama3" || name == "llama-3") return ChatTemplate::llama3;
    throw Error(strfmt("chat template '%s' is unknown: supported llama2, chatml, llama3", name.c_str()));
}

std::optional<ChatTemplate> chat_template_detect(const std::string& jinja) {
    if (jinja.find("<|im_start|>") != std::string::npos) return ChatTemplate::chatml;
    if (jinja.find("<|start_header_id|>") != std::string::npos) return ChatTemplate::llama3;
    if (jinja.find("[INST]") != std::string::npos) return ChatTemplate::llama2;
    return std::nullopt;
}

ChatTemplate chat_template_choose(const std::string& override_name, const std::string* model_template) {
    if (!override_name.empty()) return chat_template_from_name(override_name);
    LB_CHECK(model_template && !model_template->empty(),
             "chat mode: the model has no chat template (metadata key 'tokenizer.chat_template'); "
             "choose one with --chat-template llama2|chatml|llama3");
    auto t = chat_template_detect(*model_template);
    LB_CHECK(t.has_value(),
             "chat mode: the model's chat template (tokenizer.chat_template) is of no family this build knows "
             "(it has none of <|im_start|>, <|start_header_id|>, [INST]); choose one with --chat-template "
             "llama2|chatml|llama3");
    return *t;
}

std::string chat_render(ChatTemplate t, const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                        const std::string& bos, const std::string& eos) {
    if (t == ChatTemplate::llama2) return render_llama2(msgs, 0, true, bos, eos);  // the prompt ends with [/INST]
    if (t == ChatTemplate::llama3) return bos + render_llama3(msgs) + (add_generation_prompt ? kLlama3Prompt : "");
    std::string out = render_chatml(msgs);
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

std::string chat_render_continuation(ChatTemplate t, const std::vector<ChatMessage>& new_msgs, const std::string& bos,
                                     const std::string& eos) {
    if (t == ChatTemplate::llama2) return eos + render_llama2(new_msgs, 0, false, bos, eos);
    if (t == ChatTemplate::llama3) return "<|eot_id|>" + render_llama3(new_msgs) + kLlama3Prompt;
    return "<|im_end|>\n" + render_chatml(new_msgs) + "<|im_start|>assistant\n";
}

// ---- streamed output ------------------------------------------------------------------------------
Utf8Scan utf8_scan(const char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        size_t len;
        uint32_t min;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, min = 0x10000;
        } else {
            return {i, true};
        }
        uint32_t cp = c & (0x7Fu >> len);
        size_t j = 1;
        for (; j < len && i + j < n; ++j) {
            const unsigned char d = static_cast<unsigned char>(s[i + j]);
            if ((d & 0xC0) != 0x80) return {i, true};
            cp = (cp << 6) | (d & 0x3Fu);
        }
        if (j < len) {
            // unfinished at the end: still bad if what is there can never become valid
            // (C0/C1 overlong leads, F5.. beyond U+10FFFF; E0/F0 overlong, ED surrogate, F4 too large)
            const unsigned c1 = j > 1 ? static_cast<unsigned char>(s[i + 1]) : 0;
            const bool bad = c < 0xC2 || c > 0xF4 ||
                             (j > 1 && ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) ||
                                        (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)));
            return {i, bad};
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {i, true};
        i += len;
    }
    return {i, false};
}

TextStream::TextStream(std::vector<std::string> stops, Sink sink) : stops_(std::move(stops)), sink_(std::move(sink)) {
    for (const auto& s : stops_) LB_CHECK(!s.empty(), "stop string: empty");
    pending_.reserve(4096);
}

bool TextStream::push(const char* piece, size_t n) {
    pending_.append(piece, n);
    for (const auto& s : stops_) {
        const size_t at = pending_.find(s);
        if (at != std::string::npos) {
            emit_valid(at, true);
            pending_.clear();
            return true;
        }
    }
    size_t hold = 0;  // longest suffix of pending_ that is a proper prefix of a stop string
    for (const auto& s : stops_)
        for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k)
            if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
                hold = k;
                break;
            }
    emit_valid(pending_.size() - hold, false);
    return false;
}

void TextStream::flush() { emit_valid(pending_.size(), true); }

void TextStream::emit_valid(size_t n, bool final) {
    static const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
    while (n > 0) {
        const Utf8Scan u = utf8_scan(pending_.data(), n);
        if (u.complete == n || (!u.malformed && !final)) {
            emit(u.complete);
            return;
        }
        emit(u.complete);
        sink_(kReplacement, 3);
        pending_.erase(0, 1);
        n -= u.complete + 1;
    }
}

void TextStream::emit(size_t n) {
    if (n == 0) return;
    sink_(pending_.data(), n);
    pending_.erase(0, n);
}

}  // namespace lb
