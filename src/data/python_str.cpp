#include "data/python_str.hpp"

#include <cstddef>

namespace llamaft {

bool is_python_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

namespace {

// Decodes the character at s[i] (well-formed UTF-8 assumed, else one byte);
// returns its length.
size_t utf8_at(const std::string& s, size_t i, uint32_t* cp) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) n = 1;
  uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) v = (v << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *cp = n == 1 && c >= 0x80 ? 0xFFFD : v;
  return n;
}

}  // namespace

std::string python_strip(const std::string& s) {
  size_t b = 0;
  while (b < s.size()) {
    uint32_t cp;
    const size_t n = utf8_at(s, b, &cp);
    if (!is_python_space(cp)) break;
    b += n;
  }
  size_t e = b;  // end of the last non-space character
  for (size_t i = b; i < s.size();) {
    uint32_t cp;
    const size_t n = utf8_at(s, i, &cp);
    i += n;
    if (!is_python_space(cp)) e = i;
  }
  return s.substr(b, e - b);
}

}  // namespace llamaft
