#include "data/data_settings.hpp"

#include "data/prepared_dataset.hpp"

namespace llamaft {

DataSettings DataSettings::from_config(const Config& cfg) {
  DataSettings d;
  d.path = cfg.get_string("data.path");
  d.format = cfg.get_string("data.format");
  d.val_path = cfg.get_string("data.val_path");
  d.seq_len = static_cast<int>(cfg.get_int("data.seq_len"));
  d.seq_len_explicit = cfg.is_explicit("data.seq_len");
  d.shuffle = cfg.get_bool("data.shuffle");
  return d;
}

int DataSettings::resolved_seq_len(bool for_eval, const std::string& key) const {
  return seq_len_for(path, seq_len, seq_len_explicit, for_eval, key);
}

}  // namespace llamaft
