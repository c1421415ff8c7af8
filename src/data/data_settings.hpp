// The data section (data.*), parsed once: `train` reads its rows from here,
// `eval` the rows it scores, and `plan` only their length (it reads no data).
#pragma once

#include <string>

#include "config/config.hpp"

namespace llamaft {

struct DataSettings {
  std::string path;      // data.path: a JSONL file or a `llamaft prepare` folder
  std::string format;    // data.format: auto | tokens | prepared
  std::string val_path;  // data.val_path ("" : DIR/val next to a prepared DIR/train, found by train)
  int seq_len = 0;       // data.seq_len as configured; a prepared dataset's own rules when not explicit
  bool seq_len_explicit = false;  // set by a file or the command line, not the schema's default
  bool shuffle = false;

  static DataSettings from_config(const Config& cfg);
  // The row length to read `path` with (prepared_dataset.hpp's seq_len_for):
  // a prepared split's own unless seq_len was given, which must then agree.
  // for_eval picks the split eval reads; `key` is the name an error gives.
  int resolved_seq_len(bool for_eval, const std::string& key) const;
};

}  // namespace llamaft
