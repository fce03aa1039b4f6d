// test_run.cpp: `lowbit run` (tools/cmd_run.cpp) end to end on stories260K (shared/data/README.md
// section 1) with its tokenizer, stdout and stderr captured through files; the chat templates
// (models/chat.h) against hand-written prompts; and the error cases (exit code and message).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/llama2c.h"
#include "models/chat.h"
#include "models/llama.h"
#include "models/tokenizer.h"
#include "tools/commands.h"

using namespace lb;
namespace fs = std::filesystem;

static const char* kStories = "../../shared/data/stories260K/stories260K.bin";
static const char* kTok = "../../shared/data/stories260K/tok512.model";

// README section 1: greedy ids after BOS; the prompt "Once upon a time" is exactly its first four
static const std::vector<int32_t> kGreedy = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                                             395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292,
                                             411, 322, 265, 282, 295, 433, 426, 385, 328, 432};
// their text (README: "Once upon a time, there was a little girl named Lily. She loved to play ...")
static const std::string kGreedyText =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day,";

struct TempDir {
    fs::path dir;
    TempDir() {
        dir = fs::temp_directory_path() / ("lb_test_run_" + std::to_string(::getpid()));
        fs::create_directories(dir);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    std::string file(const std::string& name) const { return (dir / name).string(); }
};

static TempDir& tmp() {
    static TempDir t;
    return t;
}

// stories260K with its tokenizer (and optionally a chat template) as .lbf, built once per variant
static std::string stories_lbf(const std::string& variant = "plain") {
    const std::string path = tmp().file("stories_" + variant + ".lbf");
    if (fs::exists(path)) return path;
    LlamaCheckpoint ck = read_llama2c(kStories);
    if (variant != "notok") ck.tokenizer = Tokenizer::load_sentencepiece(kTok).data();
    if (variant == "chatml")
        ck.chat_template =
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
            "'<|im_end|>' + '\\n'}}{% endfor %}";
    if (variant == "jinja_other") ck.chat_template = "{{ messages }}";
    save_llama_lbf(ck, path);
    return path;
}

static std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

struct Result {
    int rc;
    std::string out, err;
};

// runs cmd_run with argv {"run", args...}; stdout and stderr go to files; stdin from `input`
static Result run(const std::vector<std::string>& args, const std::string& input = "") {
    std::vector<std::string> a = {"run"};
    a.insert(a.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);

    const std::string out_path = tmp().file("stdout.txt"), err_path = tmp().file("stderr.txt"),
                      in_path = tmp().file("stdin.txt");
    std::ofstream(in_path, std::ios::binary) << input;
    std::fflush(stdout);
    std::fflush(stderr);
    const int saved_out = ::dup(1), saved_err = ::dup(2), saved_in = ::dup(0);
    const int fo = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int fe = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int fi = ::open(in_path.c_str(), O_RDONLY);
    REQUIRE((fo >= 0 && fe >= 0 && fi >= 0 && saved_out >= 0 && saved_err >= 0 && saved_in >= 0));
    ::dup2(fo, 1);
    ::dup2(fe, 2);
    ::dup2(fi, 0);
    std::clearerr(stdin);
    const int rc = cmd_run(int(a.size()), argv.data());
    std::fflush(stdout);
    std::fflush(stderr);
    ::dup2(saved_out, 1);
    ::dup2(saved_err, 2);
    ::dup2(saved_in, 0);
    std::clearerr(stdin);
    for (int fd : {fo, fe, fi, saved_out, saved_err, saved_in}) ::close(fd);
    return {rc, slurp(out_path), slurp(err_path)};
}

// ---- generation -------------------------------------------------------------------------------
TEST_CASE("run: greedy continuation of 'Once upon a time' is the README story") {
    // the expected text is the README's greedy ids decoded by the model's tokenizer
    const Tokenizer tok = Tokenizer::load_sentencepiece(kTok);
    REQUIRE(tok.encode("Once upon a time", true) == std::vector<int32_t>{1, 403, 407, 261, 378});
    REQUIRE(tok.decode(kGreedy) == kGreedyText);

    const std::string m = stories_lbf();
    for (const char* threads : {"1", "2"}) {
        const Result r = run({"-m", m, "-p", "Once upon a time", "--temp", "0", "-n", "30", "-t", threads});
        CHECK(r.rc == 0);
        CHECK(r.out == kGreedyText + "\n");
        CHECK(r.err.find("prompt: 5 tokens") != std::string::npos);
        CHECK(r.err.find("generated: 30 tokens") != std::string::npos);
        MESSAGE("stderr: " << r.err);
    }
}

TEST_CASE("run: greedy from BOS alone (-p \"\") gives the same story") {
    const Result r = run({"-m", stories_lbf(), "-p", "", "--temp", "0", "-n", "34"});
    CHECK(r.rc == 0);
    CHECK(r.out == kGreedyText + "\n");
    CHECK(r.err.find("prompt: 1 tokens") != std::string::npos);
}

TEST_CASE("run: top-k 1 at any temperature is greedy; a seed repeats a sampled run") {
    const Result g = run(
        {"-m", stories_lbf(), "-p", "Once upon a time", "--temp", "1.5", "--top-k", "1", "-n", "30", "--seed", "7"});
    CHECK(g.out == kGreedyText + "\n");
    const std::vector<std::string> args = {"-m", stories_lbf(), "-p", "Once upon a time", "--temp",
                                           "1",  "-n",          "40", "--seed",           "1234"};
    const Result a = run(args), b = run(args);
    CHECK(a.rc == 0);
    CHECK(a.out == b.out);
    CHECK(a.out.rfind("Once upon a time", 0) == 0);
}

TEST_CASE("run: stop strings end the output before them; -n 0; --verbose-prompt") {
    const std::string m = stories_lbf();
    Result r = run({"-m", m, "-p", "Once upon a time", "--temp", "0", "-n", "30", "--stop", "Lily"});
    CHECK(r.rc == 0);
    CHECK(r.out == "Once upon a time, there was a little girl named \n");
    r = run({"-m", m, "-p", "Once upon a time", "--temp", "0", "-n", "30", "--stop", "xyz", "--stop", "play"});
    CHECK(r.out == "Once upon a time, there was a little girl named Lily. She loved to \n");
    r = run({"-m", m, "-p", "Once upon a time", "--temp", "0", "-n", "0", "--verbose-prompt"});
    CHECK(r.rc == 0);
    CHECK(r.out == "Once upon a time\n");
    CHECK(r.err.find("403 -> '\xE2\x96\x81Once'") != std::string::npos);
    CHECK(r.err.find("generated: 0 tokens") != std::string::npos);
}

TEST_CASE("run: the context fills up: generation stops and says so") {
    const Result r = run({"-m", stories_lbf(), "-p", "Once upon a time", "--temp", "0", "-c", "12"});
    CHECK(r.rc == 0);
    CHECK(r.err.find("context full: 12 tokens") != std::string::npos);
    // 5 prompt tokens fill positions 0..4; 8 tokens are generated (",", " there", " was", " a",
    // " l"+"ittle", " girl"), the last one not evaluated
    CHECK(r.err.find("generated: 8 tokens") != std::string::npos);
    CHECK(r.out == "Once upon a time, there was a little girl\n");
}

TEST_CASE("run: a prompt from a file; multi-byte UTF-8 passes through") {
    const std::string f = tmp().file("prompt.txt");
    std::ofstream(f, std::ios::binary) << "Once upon a time";
    Result r = run({"-m", stories_lbf(), "-f", f, "--temp", "0", "-n", "30"});
    CHECK(r.rc == 0);
    CHECK(r.out == kGreedyText + "\n");
    r = run({"-m", stories_lbf(), "-p", "Caf\xC3\xA9 \xE2\x9C\x93", "--temp", "0", "-n", "5"});
    CHECK(r.rc == 0);
    CHECK(r.out.rfind("Caf\xC3\xA9 \xE2\x9C\x93", 0) == 0);
}

// strict UTF-8 check (no overlongs, surrogates or code points above U+10FFFF)
static bool valid_utf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        const uint8_t c = uint8_t(s[i]);
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > s.size()) return false;
        uint32_t cp = len == 1 ? c : c & (0x7Fu >> len);
        for (size_t j = 1; j < len; ++j) {
            if ((uint8_t(s[i + j]) & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (uint8_t(s[i + j]) & 0x3Fu);
        }
        static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

TEST_CASE("run: the stream is valid UTF-8 even when the model emits stray byte tokens") {
    // at a high temperature stories260K picks its 256 byte tokens often: split and broken
    // sequences must come out as whole characters or U+FFFD
    int replaced = 0, multibyte = 0;
    for (const char* seed : {"1", "2", "3", "4"}) {
        const Result r = run({"-m", stories_lbf(), "-p", "Once", "--temp", "3", "--top-k", "0", "--top-p", "1",
                              "--min-p", "0", "-n", "200", "--seed", seed});
        CHECK(r.rc == 0);
        CHECK(valid_utf8(r.out));
        if (r.out.find("\xEF\xBF\xBD") != std::string::npos) replaced++;
        for (unsigned char c : r.out) multibyte += c >= 0x80;
    }
    MESSAGE(replaced << " of 4 runs had U+FFFD; " << multibyte << " non-ASCII bytes in all");
}

// ---- chat -------------------------------------------------------------------------------------
TEST_CASE("chat: the KV cache is kept across turns: each turn evaluates only its new tokens") {
    const std::string m = stories_lbf("chatml");  // template from the metadata
    const Result r =
        run({"-m", m, "--chat", "--temp", "0", "-n", "6", "--verbose-prompt"}, "Hello there\nTell me more\n");
    CHECK(r.rc == 0);
    CHECK(r.err.find("chat template chatml") != std::string::npos);
    // the prompts each turn evaluates: the first conversation, then the continuation only
    const Tokenizer tok = Tokenizer::load_sentencepiece(kTok);
    const std::string t1 = chat_render(ChatTemplate::chatml, {{"user", "Hello there"}}, true, "<s>", "</s>");
    const std::string t2 = chat_render_continuation(ChatTemplate::chatml, {{"user", "Tell me more"}}, "<s>", "</s>");
    const size_t n1 = tok.encode(t1, tok.data().add_bos, true).size(), n2 = tok.encode(t2, false, true).size();
    CHECK(r.err.find("prompt: " + std::to_string(n1) + " tokens\n") != std::string::npos);
    CHECK(r.err.find("prompt: " + std::to_string(n2) + " tokens\n") != std::string::npos);
    CHECK(r.err.find("prompt: " + std::to_string(n1 + n2) + " tokens in") != std::string::npos);
    CHECK(r.err.find("generated: 12 tokens") != std::string::npos);
    // two replies, one line each
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 2);
    MESSAGE("chat output: " << r.out);
}

TEST_CASE("chat: --chat-template overrides; without a template chat mode is an error") {
    Result r = run({"-m", stories_lbf(), "--chat", "--chat-template", "llama2", "--temp", "0", "-n", "3", "-p",
                    "You are a storyteller.", "--verbose-prompt"},
                   "Tell a story\nMore\n");
    CHECK(r.rc == 0);
    CHECK(r.err.find("chat template llama2") != std::string::npos);
    // "<s>[INST]": the text after BOS has its dummy-prefix space ("\xE2\x96\x81" = U+2581), as Meta's encoder gives
    CHECK(r.err.find("     1 -> '<s>'\n   410 -> '\xE2\x96\x81'\n   508 -> '['") != std::string::npos);
    // the second turn closes the reply with EOS and opens a new [INST] block
    CHECK(r.err.find("     2 -> '</s>'\n     1 -> '<s>'\n   410 -> '\xE2\x96\x81'\n   508 -> '['") !=
          std::string::npos);
    r = run({"-m", stories_lbf(), "--chat"}, "hi\n");
    CHECK(r.rc == 1);
    CHECK(r.err.find("the model has no chat template") != std::string::npos);
    CHECK(r.err.find("--chat-template") != std::string::npos);
    r = run({"-m", stories_lbf("jinja_other"), "--chat"}, "hi\n");
    CHECK(r.rc == 1);
    CHECK(r.err.find("of no family this build knows") != std::string::npos);
    r = run({"-m", stories_lbf(), "--chat", "--chat-template", "vicuna"}, "hi\n");
    CHECK(r.rc == 1);
    CHECK(r.err.find("chat template 'vicuna' is unknown: supported llama2, chatml, llama3") != std::string::npos);
}

TEST_CASE("chat templates: llama2, chatml and llama3 render the hand-written prompts") {
    const std::vector<ChatMessage> conv = {
        {"system", "You are helpful."}, {"user", "Hi!"}, {"assistant", "Hello. "}, {"user", " How are you? "}};
    CHECK(chat_render(ChatTemplate::llama2, conv, true, "<s>", "</s>") ==
          "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] How are you? [/INST]");
    CHECK(chat_render(ChatTemplate::llama2, {{"user", "Hi!"}}, true, "<s>", "</s>") == "<s>[INST] Hi! [/INST]");
    CHECK(chat_render(ChatTemplate::chatml, conv, true, "", "") ==
          "<|im_start|>system\nYou are helpful.<|im_end|>\n"
          "<|im_start|>user\nHi!<|im_end|>\n"
          "<|im_start|>assistant\nHello. <|im_end|>\n"
          "<|im_start|>user\n How are you? <|im_end|>\n"
          "<|im_start|>assistant\n");
    CHECK(chat_render(ChatTemplate::chatml, {{"user", "Hi!"}}, false, "", "") == "<|im_start|>user\nHi!<|im_end|>\n");
    // continuations after a reply generated up to its end token
    CHECK(chat_render_continuation(ChatTemplate::chatml, {{"user", "More"}}, "", "") ==
          "<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n");
    CHECK(chat_render_continuation(ChatTemplate::llama2, {{"user", "More"}}, "<s>", "</s>") ==
          "</s><s>[INST] More [/INST]");
    // llama3: BOS text first, header per message, contents stripped, <|eot_id|> after each
    CHECK(chat_render(ChatTemplate::llama3, conv, true, "<|begin_of_text|>", "<|end_of_text|>") ==
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    CHECK(chat_render_continuation(ChatTemplate::llama3, {{"user", "More"}}, "<|begin_of_text|>", "") ==
          "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nMore<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    // ... and Meta's Llama 3 tokenizer reads its special tokens as the ids the model was trained with
    const Tokenizer l3 = Tokenizer::load_llama3("../../shared/data/llama3-tokenizer/tokenizer.model");
    const std::vector<int32_t> ids =
        l3.encode(chat_render(ChatTemplate::llama3, {{"user", "Hi!"}}, true, "<|begin_of_text|>", ""), false, true);
    REQUIRE(ids.size() >= 8);
    CHECK(ids[0] == 128000);                                 // <|begin_of_text|>
    CHECK(ids[1] == 128006);                                 // <|start_header_id|>
    CHECK(ids[3] == 128007);                                 // <|end_header_id|>
    CHECK(std::count(ids.begin(), ids.end(), 128009) == 1);  // <|eot_id|>
    CHECK(chat_template_from_name("llama-3") == ChatTemplate::llama3);
    // errors
    CHECK_THROWS_WITH_AS(chat_render(ChatTemplate::chatml, {{"robot", "x"}}, true, "", ""),
                         doctest::Contains("role 'robot'"), Error);
    CHECK_THROWS_WITH_AS(chat_render(ChatTemplate::llama2, {{"user", "a"}, {"system", "b"}}, true, "<s>", "</s>"),
                         doctest::Contains("system message must be the first"), Error);
    CHECK_THROWS_AS(chat_render_continuation(ChatTemplate::llama2, {{"system", "b"}, {"user", "a"}}, "<s>", "</s>"),
                    Error);
}

TEST_CASE("chat templates: the family of a Jinja template; the choice") {
    const std::string smollm2 =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
        "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' "
        "}}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% "
        "endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    const std::string llama2 =
        "{% if messages[0]['role'] == 'system' %}...{% endif %}{% for message in messages %}{% if "
        "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% endif %}{% "
        "endfor %}";
    CHECK(chat_template_detect(smollm2) == ChatTemplate::chatml);
    CHECK(chat_template_detect(llama2) == ChatTemplate::llama2);
    const std::string llama3 =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
        "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% "
        "endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    CHECK(chat_template_detect(llama3) == ChatTemplate::llama3);
    CHECK(!chat_template_detect("{{ messages }}").has_value());
    CHECK(chat_template_choose("", &smollm2) == ChatTemplate::chatml);
    CHECK(chat_template_choose("llama2", &smollm2) == ChatTemplate::llama2);
    CHECK(chat_template_choose("chatml", nullptr) == ChatTemplate::chatml);
    CHECK_THROWS_WITH_AS(chat_template_choose("", nullptr), doctest::Contains("has no chat template"), Error);
    CHECK(std::string(chat_template_name(ChatTemplate::llama2)) == "llama2");
    CHECK(chat_template_from_name("llama-2") == ChatTemplate::llama2);
}

// ---- streamed text ------------------------------------------------------------------------------
TEST_CASE("utf8_scan: whole characters, unfinished tails, malformed sequences") {
    auto scan = [](const std::string& s) { return utf8_scan(s.data(), s.size()); };
    CHECK(scan("abc").complete == 3);
    CHECK(scan("a\xC3\xA9\xE2\x9C\x93\xF0\x9F\x99\x82").complete == 10);
    CHECK((scan("ab\xE2\x9C").complete == 2 && !scan("ab\xE2\x9C").malformed));  // unfinished
    CHECK((scan("ab\xF0").complete == 2 && !scan("ab\xF0").malformed));
    CHECK((scan("a\xFF"
                "b")
                   .complete == 1 &&
           scan("a\xFF"
                "b")
               .malformed));
    CHECK(scan("\xE2x").malformed);
    CHECK(scan("\xC0\x80").malformed);          // overlong
    CHECK(scan("\xED\xA0\x80").malformed);      // surrogate
    CHECK(scan("\xF4\x90\x80\x80").malformed);  // above U+10FFFF
    CHECK(scan("\xE0\x80").malformed);          // can never become valid (overlong)
    CHECK(scan("\x80").malformed);
    CHECK(utf8_valid(""));
    CHECK(!utf8_valid("\xC3"));
}

TEST_CASE("TextStream: split characters come out whole; broken bytes as U+FFFD; stop strings") {
    std::vector<std::string> chunks;
    auto sink = [&](const char* p, size_t n) { chunks.emplace_back(p, n); };
    auto joined = [&] {
        std::string s;
        for (auto& c : chunks) s += c;
        return s;
    };
    {
        TextStream ts({}, sink);
        CHECK(!ts.push("a", 1));
        CHECK(joined() == "a");
        CHECK(!ts.push("\xE2", 1));  // U+2713 in three byte tokens
        CHECK(!ts.push("\x9C", 1));
        CHECK(joined() == "a");  // nothing of it yet
        CHECK(
            !ts.push("\x93"
                     "b",
                     2));
        CHECK(joined() ==
              "a\xE2\x9C\x93"
              "b");
        CHECK(chunks.back() ==
              "\xE2\x9C\x93"
              "b");
        CHECK(
            !ts.push("\xFF"
                     "c\xE2x",
                     4));  // malformed bytes
        CHECK(joined() ==
              "a\xE2\x9C\x93"
              "b\xEF\xBF\xBD"
              "c\xEF\xBF\xBDx");
        CHECK(!ts.push("\xC3", 1));  // unfinished at the end: U+FFFD on flush
        ts.flush();
        CHECK(joined() ==
              "a\xE2\x9C\x93"
              "b\xEF\xBF\xBD"
              "c\xEF\xBF\xBDx\xEF\xBF\xBD");
    }
    chunks.clear();
    {
        TextStream ts({"</end>", "STOP"}, sink);
        CHECK(!ts.push("Hello </", 8));
        CHECK(joined() == "Hello ");  // "</" may start "</end>"
        CHECK(!ts.push("b>", 2));
        CHECK(joined() == "Hello </b>");
        CHECK(!ts.push(" S", 2));
        CHECK(!ts.push("TO", 2));
        CHECK(joined() == "Hello </b> ");
        CHECK(ts.push("P and more", 10));
        CHECK(joined() == "Hello </b> ");
    }
    chunks.clear();
    {
        TextStream ts({"</end>"}, sink);
        CHECK(ts.push("x</e", 4) == false);
        CHECK(ts.push("nd>", 3));
        ts.flush();
        CHECK(joined() == "x");
    }
    CHECK_THROWS_WITH_AS(TextStream({""}, sink), doctest::Contains("stop string: empty"), Error);
}

// ---- errors ---------------------------------------------------------------------------------------
TEST_CASE("run: bad input gives a clear error and exit code 1") {
    const std::string m = stories_lbf();
    auto fails = [](const std::vector<std::string>& args, const std::string& msg) {
        const Result r = run(args);
        CHECK_MESSAGE(r.rc == 1, "args ending " << args.back());
        CHECK_MESSAGE(r.err.find(msg) != std::string::npos, "expected '" << msg << "' in: " << r.err);
        CHECK(r.err.find("lowbit run: error: ") != std::string::npos);
    };
    fails({"-m", tmp().file("missing.lbf"), "-p", "x"}, "missing.lbf");
    fails({"-m", kStories, "-p", "x"}, "stories260K.bin");  // a llama2.c file, not .lbf
    fails({"-m", stories_lbf("notok"), "-p", "x"}, "the model has no tokenizer");
    fails({"-m", m, "-p", "Once upon a time", "-c", "3"}, "the prompt is 5 tokens, longer than the context of 3");
    fails({"-m", m, "-p", "Once \xFF upon"}, "the prompt (-p) is not valid UTF-8 (a malformed sequence at byte 5)");
    fails({"-m", m, "-p", "Once \xE2\x9C"}, "not valid UTF-8 (an unfinished sequence at byte 5)");
    fails({"-m", m, "-p", "x", "-n", "-5"}, "-n: '-5' is not an integer in -1..");
    fails({"-m", m, "-p", "x", "-c", "0"}, "-c: '0' is not an integer in 1..");
    fails({"-m", m, "-p", "x", "-t", "0"}, "-t: '0' is not an integer in 1..1024");
    fails({"-m", m, "-p", "x", "--temp", "-1"}, "temperature -1: must be a finite number >= 0");
    fails({"-m", m, "-p", "x", "--temp", "hot"}, "--temp: 'hot' is not a number");
    fails({"-m", m, "-p", "x", "--top-p", "2"}, "top-p 2: must be in (0, 1]");
    fails({"-m", m, "-p", "x", "--top-k", "-3"}, "--top-k: '-3' is not an integer in 0..");
    fails({"-m", m, "-p", "x", "--min-p", "1.5"}, "min-p 1.5");
    fails({"-m", m, "-p", "x", "--repeat-penalty", "0"}, "repeat-penalty 0");
    fails({"-m", m, "-p", "x", "--repeat-last-n", "-2"}, "--repeat-last-n: '-2' is not an integer in 0..");
    fails({"-m", m, "-p", "x", "--fast"}, "unknown option '--fast'");
    fails({"-m", m, "-p", "x", "-n"}, "option -n needs a value");
    fails({"-m", m, "-p", "x", "-f", "y"}, "give the prompt once");
    fails({"-m", m}, "no prompt");
    fails({"-p", "x"}, "no model");
    fails({"-m", m, "-f", tmp().file("nope.txt")}, "cannot open");
}
