// A model named by its Hugging Face hub id ("HuggingFaceTB/SmolLM2-135M"),
// found offline in the cache huggingface_hub lays out: on clusters models are
// downloaded once, on a login node, into a shared HF_HOME, and compute nodes
// have no network. llamaft never downloads.
//
//   $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
//   else ~/.cache/huggingface/hub
//     models--ORG--NAME/refs/main              the commit hash of main
//     models--ORG--NAME/snapshots/<hash>/...   the files (links into blobs/)
#pragma once

#include <string>

namespace llamaft {

// Whether `path` reads as a hub id (ORG/NAME, one slash, letters, digits,
// '-', '_', '.'; not absolute, not starting with '.').
bool looks_like_hub_id(const std::string& path);

// `path` itself when it exists; else, for a hub id, its snapshot folder in
// the cache (main's revision), with `*note` saying where it was found. A hub
// id that is not cached is a user error naming the folders looked in and the
// command that downloads it on a login node.
std::string resolve_model_path(const std::string& path, std::string* note);

}  // namespace llamaft
