// hf_json.h: small nlohmann-json helpers shared by the Hugging Face file readers
// (formats/hf_config.cpp, formats/hf_tokenizer_json.cpp). Internal to formats/.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lb {
namespace hf {

bool is_file(const std::string& path);  // a regular file exists at path
// parses JSON; a syntax error is an lb::Error naming `origin`
nlohmann::json parse_json(const std::string& text, const std::string& origin);
// obj[key] if obj is an object that has it, else nullptr
const nlohmann::json* member(const nlohmann::json& obj, const char* key);
// obj[key] as a string, "" when absent or null; another type is an error naming origin and where+key
std::string str_or_empty(const nlohmann::json& obj, const char* key, const std::string& origin,
                         const std::string& where);

}  // namespace hf
}  // namespace lb
