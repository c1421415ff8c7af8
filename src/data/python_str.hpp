// Python's idea of whitespace, for what templates and lm_eval requests do
// with str.strip(), str.rstrip() and str.split(): the chat templates' Jinja
// trim and lm_eval's context/continuation split must see the same characters
// Python does, or a token id moves.
#pragma once

#include <cstdint>
#include <string>

namespace llamaft {

// str.isspace() for one code point: bidi classes WS, B, S, or category Zs.
bool is_python_space(uint32_t c);

// Python's str.strip() (Jinja's trim): Unicode whitespace at both ends.
std::string python_strip(const std::string& s);

}  // namespace llamaft
