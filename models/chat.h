// chat.h: prompts for chat models from a list of {role, content} messages. No Jinja engine: the
// model's tokenizer.chat_template is only inspected to tell which family it is, and each family is
// written out here by hand.
//   llama2  "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]"
//           (LLaMA-2-chat, as its Hugging Face template renders it: contents stripped of surrounding
//           whitespace, the system block inside the first user turn)
//   chatml  "<|im_start|>{role}\n{content}<|im_end|>\n" per message, then "<|im_start|>assistant\n"
//           (SmolLM2, Qwen, ...)
//   llama3  "{bos}" then "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>" per message
//           (contents stripped of surrounding whitespace), then
//           "<|start_header_id|>assistant<|end_header_id|>\n\n" (Llama 3 / 3.1 instruct)
// `bos` and `eos` are the texts of the tokenizer's BOS / EOS tokens ("<s>", "</s>"); the prompt is
// then tokenized with special-token parsing.
// Also here: the streamed text of a reply (TextStream: whole UTF-8 characters only, stop strings).
#pragma once
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lb {

enum class ChatTemplate { llama2, chatml, llama3 };

struct ChatMessage {
    std::string role;  // "system", "user" or "assistant"
    std::string content;
};

const char* chat_template_name(ChatTemplate t);  // "llama2", "chatml", "llama3"
// "llama2" (also "llama-2"), "chatml" or "llama3" (also "llama-3"); throws lb::Error listing the supported names
ChatTemplate chat_template_from_name(const std::string& name);
// The family of a Jinja chat template: contains "<|im_start|>" -> chatml, "<|start_header_id|>" ->
// llama3, "[INST]" -> llama2.
std::optional<ChatTemplate> chat_template_detect(const std::string& jinja);
// --chat-template NAME wins; otherwise the model's template (nullptr: the model has none) must be
// recognized. Throws lb::Error saying what is missing.
ChatTemplate chat_template_choose(const std::string& override_name, const std::string* model_template);

// The whole conversation; with add_generation_prompt, ends where the assistant's reply begins.
// Throws lb::Error for an unknown role or (llama2) a system message that is not the first message.
std::string chat_render(ChatTemplate t, const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                        const std::string& bos, const std::string& eos);

// For a conversation kept in a KV cache: the text that follows an assistant reply generated up to,
// but not including, its end token. It closes that reply (chatml "<|im_end|>\n", llama3 "<|eot_id|>",
// llama2 eos), then
// renders `new_msgs` (user messages) and the generation prompt.
std::string chat_render_continuation(ChatTemplate t, const std::vector<ChatMessage>& new_msgs, const std::string& bos,
                                     const std::string& eos);

// ---- streamed output ------------------------------------------------------------------------------
// UTF-8 scan of s[0..n): `complete` is the length of the prefix made of whole, valid characters
// (no overlongs, surrogates or code points above U+10FFFF); `malformed` says whether the scan
// stopped at a bad sequence rather than at the end or at a valid but unfinished last character.
struct Utf8Scan {
    size_t complete;
    bool malformed;
};
Utf8Scan utf8_scan(const char* s, size_t n);
inline bool utf8_valid(const std::string& s) { return utf8_scan(s.data(), s.size()).complete == s.size(); }

// Token pieces in, text out through `sink`, always valid UTF-8: an unfinished character and any tail
// that could still become a stop string are held back; a malformed byte comes out as U+FFFD.
// push() allocates nothing while the held-back text stays under 4 KiB.
class TextStream {
 public:
    using Sink = std::function<void(const char* data, size_t n)>;
    TextStream(std::vector<std::string> stops, Sink sink);
    // Returns true when a stop string is complete: the text before it has gone out, the stop
    // string and anything after it are dropped.
    bool push(const char* piece, size_t n);
    // Sends what is held back (an unfinished character as U+FFFD).
    void flush();

 private:
    void emit_valid(size_t n, bool final);
    void emit(size_t n);
    std::vector<std::string> stops_;
    Sink sink_;
    std::string pending_;
};

}  // namespace lb
