// `terse compress`: the method from the command line, for trying it on a prompt and for scripts.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace terse::compressor {

class Compressor;

// Reads a prompt from stdin (plain text, or a JSON object {"instruction", "context": [...],
// "question"}), compresses it and prints the result. argv[0] is ignored (the program or the
// subcommand name). Run with --help for the flags. Returns the exit status: 0 on success, 2 on
// bad flags or bad input (with a message on stderr), 1 when the model cannot be loaded or
// compression fails otherwise.
int RunCompressCommand(int argc, char** argv);

// The same over explicit streams. `compressor` may be null (it is then loaded from --model);
// `color` says whether --show may use ANSI styles (stdout is a terminal).
int RunCompressCommand(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
                       std::ostream& err, bool color, Compressor* compressor);

}  // namespace terse::compressor
