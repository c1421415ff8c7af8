#include "model/hub_cache.hpp"

#include <sys/stat.h>

#include <cctype>
#include <cstdlib>
#include <fstream>

#include "core/error.hpp"
#include "core/util.hpp"

namespace llamaft {

namespace {

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// huggingface_hub's constants.HF_HUB_CACHE, in its order of precedence.
std::string hub_cache_dir() {
  if (!env("HF_HUB_CACHE").empty()) return env("HF_HUB_CACHE");
  if (!env("HF_HOME").empty()) return env("HF_HOME") + "/hub";
  if (!env("XDG_CACHE_HOME").empty()) return env("XDG_CACHE_HOME") + "/huggingface/hub";
  return env("HOME") + "/.cache/huggingface/hub";
}

}  // namespace

bool looks_like_hub_id(const std::string& path) {
  const auto slash = path.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == path.size() || path.find('/', slash + 1) != std::string::npos)
    return false;
  if (path[0] == '.' || path[slash + 1] == '.') return false;
  for (char c : path)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) return false;
  return true;
}

std::string resolve_model_path(const std::string& path, std::string* note) {
  if (path.empty() || exists(path) || !looks_like_hub_id(path)) return path;
  const std::string cache = hub_cache_dir();
  const std::string repo = cache + "/models--" + path.substr(0, path.find('/')) + "--" + path.substr(path.find('/') + 1);
  std::string hash;
  if (std::ifstream ref(repo + "/refs/main"); ref) std::getline(ref, hash);
  const std::string snapshot = repo + "/snapshots/" + hash;
  if (!hash.empty() && exists(snapshot + "/config.json")) {
    if (note) *note = str_cat("model '", path, "' from the Hugging Face cache: ", snapshot, " (main = ", hash, ")");
    return snapshot;
  }
  LLAMAFT_FAIL("model '", path, "' is not a folder, and reads as a Hugging Face hub id that is not in the cache (",
               hash.empty() ? repo + "/refs/main is missing" : snapshot + "/config.json is missing",
               "; the cache is HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). llamaft never "
               "downloads: on a login node, with the same HF_HOME, run `hf download ", path,
               "` (huggingface_hub >= 0.34; older: `huggingface-cli download ", path, "`), or give the model's folder");
}

}  // namespace llamaft
