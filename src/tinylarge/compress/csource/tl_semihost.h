/* ARM semihosting calls used by tinylarge firmware (see tl_startup.c). */
#ifndef TL_SEMIHOST_H_
#define TL_SEMIHOST_H_

#define TL_SYS_OPEN 0x01
#define TL_SYS_CLOSE 0x02
#define TL_SYS_WRITE0 0x04
#define TL_SYS_WRITE 0x05
#define TL_SYS_READ 0x06

int tl_semihost(int op, const void *arg);
void tl_exit(int status);

#endif /* TL_SEMIHOST_H_ */
