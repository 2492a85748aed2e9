package release

import (
	"debug/elf"
	"fmt"
	"os"
	"strings"
)

// machines name the ELF machines an operator may meet, for "X is an
// aarch64 ELF".
var machines = map[elf.Machine]string{
	elf.EM_X86_64:    "x86-64",
	elf.EM_AARCH64:   "aarch64",
	elf.EM_386:       "i386",
	elf.EM_ARM:       "arm",
	elf.EM_RISCV:     "riscv",
	elf.EM_PPC64:     "ppc64",
	elf.EM_S390:      "s390x",
	elf.EM_MIPS:      "mips",
	elf.EM_LOONGARCH: "loongarch",
}

// checkELF says what is wrong, if anything, with the binary at file (which
// the release calls name) as a linux/arch executable: "" when nothing is.
// Only the headers are read. Both ET_EXEC and ET_DYN pass: Go builds static
// ET_EXEC binaries, but a PIE build is ET_DYN and just as runnable.
func checkELF(file, name, arch string) (string, error) {
	r, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("read ELF header of %s: %w", name, err)
	}
	defer r.Close()
	// Errors past the open are the file's content: a foreign format, or an
	// ELF cut short before its headers end.
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Sprintf("not an ELF executable: %s: %v", name, err), nil
	}
	want := arches[arch]
	if f.Machine != want || f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return fmt.Sprintf("wrong arch: %s is %s ELF, the release says %s", name, describe(f), arch), nil
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Sprintf("not an executable: %s is an ELF of type %v", name, f.Type), nil
	}
	return "", nil
}

// describe names the machine a binary is built for, with its article, as
// an operator says it: "an aarch64", "a 32-bit arm".
func describe(f *elf.File) string {
	d, ok := machines[f.Machine]
	if !ok {
		d = f.Machine.String()
	}
	if f.Data == elf.ELFDATA2MSB {
		d = "big-endian " + d
	}
	if f.Class == elf.ELFCLASS32 {
		d = "32-bit " + d
	}
	if strings.ContainsRune("aeiosxAEIOSX", rune(d[0])) { // x86-64 and s390x are said "ex", "ess"
		return "an " + d
	}
	return "a " + d
}
