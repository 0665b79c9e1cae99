/*
 * hi_board_secrets.example.h - template for hi_board_secrets.h (gitignored). Copy it next to this file as
 * hi_board_secrets.h and fill in your values; the ESP32 and Coral builds refuse to compile without it.
 * Never commit the real file: it holds the WiFi password and the server's pre-shared key.
 */
#ifndef HI_BOARD_SECRETS_H
#define HI_BOARD_SECRETS_H

#define HI_WIFI_SSID "your-network"
#define HI_WIFI_PASSWORD "your-password"
/* The edge server (hi-server --host 0.0.0.0 --port 8555 --key-file ...). */
#define HI_SERVER_HOST "192.168.1.10"
#define HI_SERVER_PORT 8555
/* The server's pre-shared key (the same bytes as its key file). A server bound to a non-loopback address
 * always requires one; "" only works against an unauthenticated test server. */
#define HI_SERVER_KEY "replace-with-at-least-16-bytes-of-secret"
/* Model id on the server ("" = the server's default model). */
#define HI_SERVER_MODEL_ID ""

#endif /* HI_BOARD_SECRETS_H */
