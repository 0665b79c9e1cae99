/* Declarations of the ArduinoBLE subset used by src/nano33ble (see Arduino.h in this folder). */
#ifndef HI_ARDUINOBLE_STUB_H
#define HI_ARDUINOBLE_STUB_H
#include "Arduino.h"

enum { BLERead = 0x02, BLEWriteWithoutResponse = 0x04, BLEWrite = 0x08, BLENotify = 0x10 };
enum BLECharacteristicEvent { BLESubscribed, BLEUnsubscribed, BLERead_, BLEWritten };

class BLEDevice {};
class BLECharacteristic;
typedef void (*BLECharacteristicEventHandler)(BLEDevice device, BLECharacteristic characteristic);

class BLECharacteristic {
 public:
  BLECharacteristic(const char *uuid, uint8_t properties, int valueSize, bool fixedLength = false);
  const char *uuid() const;
  const uint8_t *value() const;
  int valueLength() const;
  int writeValue(const uint8_t *value, int length, bool withResponse = true);
  void setEventHandler(int event, BLECharacteristicEventHandler handler);
};

class BLEService {
 public:
  explicit BLEService(const char *uuid);
  void addCharacteristic(BLECharacteristic &c);
};

class BLELocalDevice {
 public:
  int begin();
  void poll();
  bool connected() const;
  bool setLocalName(const char *name);
  bool setAdvertisedService(const BLEService &service);
  void addService(BLEService &service);
  int advertise();
};
extern BLELocalDevice BLE;
#endif
