/* Wine 8 (Debian 12) lacks bcryptprimitives.dll, which Rust's standard library on
 * Windows calls for ProcessPrng since Rust 1.78. This stand-in, used only inside the
 * xtask's Wine prefix, forwards to RtlGenRandom (advapi32 SystemFunction036), which
 * Wine does provide. It never ships: real Windows has the system DLL. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
