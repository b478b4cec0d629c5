// `terse eval`: measures what compression keeps, per task family and rate, against baselines.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace terse::eval {

// args[0] is the subcommand's name. Prints the table to `out` and a progress bar to stderr;
// writes --json and --svg files when asked. Returns 0, 2 for bad flags or input, 1 when the model
// cannot be loaded or a --check threshold is not met (each miss named on `err`).
int RunEvalCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace terse::eval
