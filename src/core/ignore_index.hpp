// The label of a position that contributes no loss (torch's
// CrossEntropyLoss ignore_index, Hugging Face's -100): data/ writes it,
// backends skip it, the model counts around it.
#pragma once

namespace llamaft {

constexpr int kIgnoreIndex = -100;

}  // namespace llamaft
