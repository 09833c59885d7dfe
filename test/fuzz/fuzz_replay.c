/*
 * fuzz_replay.c - runs LLVMFuzzerTestOneInput over files, one call per
 * file, as libFuzzer runs an input: for compilers without libFuzzer
 * (gcc), and for ctest, which replays the seed corpus in every build.
 *
 * Each argument is a file or a directory, whose files are run in name
 * order (names starting with '.' are skipped).  Exits 0 once every
 * input has run and at least one did; an input that breaks a promise of
 * the library aborts inside the call.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t inputs_run;

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    size_t size = 0, cap = 0, n;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    do {
        if (size == cap) {
            unsigned char *grown = realloc(data, cap = cap * 2 + 4096);

            if (grown == NULL) {
                fprintf(stderr, "%s: out of memory\n", path);
                free(data);
                fclose(f);
                return -1;
            }
            data = grown;
        }
        n = fread(data + size, 1, cap - size, f);
        size += n;
    } while (n > 0);
    if (ferror(f)) {
        perror(path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    fprintf(stderr, "replaying %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    inputs_run++;
    return 0;
}

static int replay_dir(const char *path)
{
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort), i, status = 0;

    if (n < 0) {
        perror(path);
        return -1;
    }
    for (i = 0; i < n; i++) {
        char file[4096];

        if (status == 0 && names[i]->d_name[0] != '.') {
            snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name);
            status = replay_file(file);
        }
        free(names[i]);
    }
    free(names);
    return status;
}

int main(int argc, char **argv)
{
    struct stat st;
    int i;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIRECTORY...\n", argv[0]);
        return 2;
    }
    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if ((S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i])) != 0)
            return 1;
    }
    printf("%zu inputs replayed\n", inputs_run);
    return inputs_run > 0 ? 0 : 1;
}
