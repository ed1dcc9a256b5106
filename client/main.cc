// kvstream: the command-line client. Everything is in the kvstream_client
// library (client/cli.cc dispatches); this file only holds main().
#include "client/commands.h"

int main(int argc, char** argv) { return kvstream::client::RunCli(argc, argv); }
